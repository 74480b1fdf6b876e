// The writes a request makes: create, supersede or retry a target, with its
// events. Runs inside the writer thread's group commit (write-worker.ts).
import type { Database } from 'better-sqlite3';
import { COLUMNS, type Target } from './database.ts';
import { decideChange, type Change } from './desired-state.ts';
import { isRepositoryFailure } from './errors.ts';

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
    // The retries still ahead in a repository+branch. On the hot path, so kept to what targets_due answers
    // alone (pending targets whose retry is ahead: none when all is well), in the index's order, soonest first.
    // An IN list of codes or an ORDER BY here measured 14-17 µs a request instead of 5: the codes are checked in JS.
    retries: db.prepare(`SELECT next_attempt_at AS until, last_error_code AS code, last_error_message AS message FROM targets
      WHERE status = 'pending' AND next_attempt_at > ? AND repository = ? AND branch = ?`),
    // A held request keeps the attempts, so the shared backoff keeps growing while the outage lasts.
    request: db.prepare(`UPDATE targets SET desired_tag = @tag, desired_digest = @digest, generation = generation + 1,
        batch_id = @batchId, requested_by = @requestedBy, requested_at = @at, request_trace = @traceparent,
        status = 'pending', attempts = CASE WHEN @until IS NULL THEN 0 ELSE attempts END, next_attempt_at = coalesce(@until, @at),
        last_error_code = @code, last_error_message = @message, updated_at = @at
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

  /** The next retry of a repository+branch that waits out a repository failure, and why; undefined when none does. */
  function heldUntil(repository: string, branch: string, at: number) {
    type Retry = { until: number; code: string; message: string };
    // Almost always there is no retry ahead, or the first is the repository's (a repository failure holds all
    // its targets to one retry): one row answers.
    const soonest = q.retries.get(at, repository, branch) as Retry | undefined;
    if (!soonest || isRepositoryFailure(soonest.code)) return soonest;
    return (q.retries.all(at, repository, branch) as Retry[]).find((r) => isRepositoryFailure(r.code));
  }

  function recordOne(update: UpdateRequest, meta: RequestMeta): RecordResult {
    const existing = q.byKey.get(update.repository, update.branch, update.image, update.keyword) as Target | undefined;
    const change = decideChange(existing, update);
    if (change === 'unchanged') return { change, target: existing! };
    const traceId = traceIdOf(meta.traceparent);
    // While the repository itself fails (unreachable, refused credentials, rate limit), a new tag or image joins
    // its next retry, with the failure as its reason: trying at once would only repeat it, once per CI job.
    const hold = heldUntil(update.repository, update.branch, meta.at);
    const params = { ...update, ...meta, until: null, code: null, message: null, ...hold };
    let target: Target;
    if (!existing) {
      target = q.insert.get(params) as Target;
    } else {
      if (change === 'superseded') {
        addEvent(existing.id, meta.at, 'superseded', {
          tag: existing.desiredTag,
          digest: existing.desiredDigest,
          message: `superseded by ${update.tag}${update.digest ? `@${update.digest}` : ''}`,
          traceId,
        });
      }
      target = q.request.get({ ...params, id: existing.id }) as Target;
    }
    addEvent(target.id, meta.at, 'requested', {
      tag: update.tag,
      digest: update.digest,
      message: hold
        ? `the repository is failing (${hold.code}): waits for its next retry at ${new Date(hold.until).toISOString()}`
        : change === 'retried'
          ? 'requested again after a failure: retrying'
          : undefined,
      details: { by: meta.requestedBy, ...(meta.batchId ? { batchId: meta.batchId } : {}) },
      traceId,
    });
    return { change, target };
  }

  return (updates, meta) => updates.map((update) => recordOne(update, meta));
}
