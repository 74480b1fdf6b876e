// The writes a request makes: create, supersede or retry a target, with its
// events. Runs inside the writer thread's group commit (write-worker.ts).
import type { Database } from 'better-sqlite3';
import { COLUMNS, type Target } from './database.ts';
import { decideChange, type Change } from './desired-state.ts';
import { isRepositoryFailure, REPOSITORY_FAILURES_SQL } from './errors.ts';

/** A validated request for one target, with the repository and branch resolved. */
export interface UpdateRequest {
  repository: string;
  branch: string;
  image: string;
  keyword: string;
  tag: string;
  digest: string | null;
}

export interface RequestMeta {
  requestedBy: string;
  at: number;
  batchId: string | null;
  traceparent: string | null;
}

export interface RecordResult {
  change: Change;
  target: Target;
}

/** The trace id inside a W3C traceparent header, or null. */
function traceIdOf(traceparent: string | null): string | null {
  return traceparent ? (/^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(traceparent)?.[1] ?? null) : null;
}

/** Prepares the statements once; returns the function that records one request's updates. */
export function createUpdateRecorder(db: Database): (updates: UpdateRequest[], meta: RequestMeta) => RecordResult[] {
  const q = {
    byKey: db.prepare(`SELECT ${COLUMNS} FROM targets WHERE repository = ? AND branch = ? AND image = ? AND keyword = ?`),
    insert: db.prepare(`INSERT INTO targets (repository, branch, image, keyword, desired_tag, desired_digest, batch_id,
        requested_by, requested_at, request_trace, status, next_attempt_at, last_error_code, last_error_message, created_at, updated_at)
      VALUES (@repository, @branch, @image, @keyword, @tag, @digest, @batchId,
        @requestedBy, @at, @traceparent, 'pending', coalesce(@until, @at), @code, @message, @at, @at)
      RETURNING ${COLUMNS}`),
    // The next retry of a repository+branch whose targets wait out a repository failure, and why.
    hold: db.prepare(`SELECT next_attempt_at AS until, last_error_code AS code, last_error_message AS message FROM targets
      WHERE repository = ? AND branch = ? AND status = 'pending' AND next_attempt_at > ?
        AND last_error_code IN (${REPOSITORY_FAILURES_SQL})
      ORDER BY next_attempt_at LIMIT 1`),
    request: db.prepare(`UPDATE targets SET desired_tag = @tag, desired_digest = @digest, generation = generation + 1,
        batch_id = @batchId, requested_by = @requestedBy, requested_at = @at, request_trace = @traceparent,
        status = 'pending', attempts = 0, next_attempt_at = @at, last_error_code = NULL, last_error_message = NULL,
        updated_at = @at
      WHERE id = @id
      RETURNING ${COLUMNS}`),
    // The same, for a target waiting out its repository's failure: it keeps its retry time, attempts and error.
    requestHeld: db.prepare(`UPDATE targets SET desired_tag = @tag, desired_digest = @digest, generation = generation + 1,
        batch_id = @batchId, requested_by = @requestedBy, requested_at = @at, request_trace = @traceparent, updated_at = @at
      WHERE id = @id
      RETURNING ${COLUMNS}`),
    event: db.prepare(`INSERT INTO events (target_id, at, type, tag, digest, message, details, trace_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
  };

  function addEvent(targetId: number, at: number, type: string, fields: { tag?: string | null; digest?: string | null; message?: string; details?: object; traceId?: string | null }): void {
    q.event.run(
      targetId,
      at,
      type,
      fields.tag ?? null,
      fields.digest ?? null,
      fields.message ?? null,
      fields.details ? JSON.stringify(fields.details) : null,
      fields.traceId ?? null,
    );
  }

  function recordOne(update: UpdateRequest, meta: RequestMeta): RecordResult {
    const existing = q.byKey.get(update.repository, update.branch, update.image, update.keyword) as Target | undefined;
    const change = decideChange(existing, update);
    const traceId = traceIdOf(meta.traceparent);
    const params = { ...update, ...meta };
    let target: Target;
    let hold: { until: number; code: string; message?: string } | undefined;
    if (!existing) {
      // A new image in a repository that is failing joins its next retry too, with the failure as its reason.
      hold = q.hold.get(update.repository, update.branch, meta.at) as typeof hold;
      target = q.insert.get({ ...params, until: null, code: null, message: null, ...hold }) as Target;
    } else {
      if (change === 'unchanged') return { change, target: existing };
      if (change === 'superseded') {
        addEvent(existing.id, meta.at, 'superseded', {
          tag: existing.desiredTag,
          digest: existing.desiredDigest,
          message: `superseded by ${update.tag}${update.digest ? `@${update.digest}` : ''}`,
          traceId,
        });
      }
      // While the repository itself fails (unreachable, refused credentials, rate limit), a new tag joins the
      // next retry: trying again on every request would only repeat the failure, once per CI job.
      const held = change === 'superseded' && existing.status === 'pending' && existing.nextAttemptAt > meta.at && isRepositoryFailure(existing.lastErrorCode);
      target = (held ? q.requestHeld : q.request).get({ ...params, id: existing.id }) as Target;
      if (held) hold = { until: target.nextAttemptAt, code: target.lastErrorCode! };
    }
    addEvent(target.id, meta.at, 'requested', {
      tag: update.tag,
      digest: update.digest,
      message:
        change === 'retried'
          ? 'requested again after a failure: retrying'
          : hold
            ? `the repository is failing (${hold.code}): waits for its next retry at ${new Date(hold.until).toISOString()}`
            : undefined,
      details: { by: meta.requestedBy, ...(meta.batchId ? { batchId: meta.batchId } : {}) },
      traceId,
    });
    return { change, target };
  }

  return (updates, meta) => updates.map((update) => recordOne(update, meta));
}
