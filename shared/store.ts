// The SQLite store: one connection in WAL mode, migrations applied at open,
// request writes grouped into durable commits, and the queries the API needs.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { decideChange, type Change, type TargetStatus } from './desired-state.ts';
import { createGroupCommit } from './group-commit.ts';
import { migrate, pendingMigrations, readMigrations, type Migration } from './migrate.ts';

/** The desired and applied state of one (repository, branch, image, keyword). */
export interface Target {
  id: number;
  repository: string;
  branch: string;
  image: string;
  keyword: string;
  desiredTag: string;
  desiredDigest: string | null;
  generation: number;
  batchId: string | null;
  requestedBy: string;
  requestedAt: number;
  requestTrace: string | null;
  status: TargetStatus;
  attempts: number;
  nextAttemptAt: number;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  appliedTag: string | null;
  appliedDigest: string | null;
  appliedCommit: string | null;
  appliedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** One entry of a target's audit trail. */
export interface TargetEvent {
  id: number;
  targetId: number;
  at: number;
  type: string;
  tag: string | null;
  digest: string | null;
  message: string | null;
  details: Record<string, unknown> | null;
  traceId: string | null;
}

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

/** Regular expressions a token's reads are limited to; null for all. */
export type ReadScope = { repository: RegExp; image: RegExp; keyword: RegExp } | null;

export interface TargetFilter {
  status?: TargetStatus;
  repository?: string;
  branch?: string;
  image?: string;
  keyword?: string;
  after?: number;
  limit: number;
}

export interface StoreOptions {
  synchronous: 'full' | 'normal';
  migrations?: Migration[];
}

const COLUMNS = `id, repository, branch, image, keyword, desired_tag AS desiredTag, desired_digest AS desiredDigest,
  generation, batch_id AS batchId, requested_by AS requestedBy, requested_at AS requestedAt,
  request_trace AS requestTrace, status, attempts, next_attempt_at AS nextAttemptAt,
  last_error_code AS lastErrorCode, last_error_message AS lastErrorMessage, applied_tag AS appliedTag,
  applied_digest AS appliedDigest, applied_commit AS appliedCommit, applied_at AS appliedAt,
  created_at AS createdAt, updated_at AS updatedAt`;

/** The trace id inside a W3C traceparent header, or null. */
function traceIdOf(traceparent: string | null): string | null {
  return traceparent ? (/^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(traceparent)?.[1] ?? null) : null;
}

/** Opens (creating if needed) the database file, applies migrations, and prepares the queries. */
export function openStore(file: string, options: StoreOptions) {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const regexCache = new Map<string, RegExp>();
  db.function('regexp', { deterministic: true }, (pattern, value) => {
    let re = regexCache.get(pattern as string);
    if (!re) regexCache.set(pattern as string, (re = new RegExp(pattern as string)));
    return re.test(String(value)) ? 1 : 0;
  });
  const migrations = options.migrations ?? readMigrations();
  const appliedMigrations = migrate(db, migrations);

  const group = createGroupCommit(db);
  const q = {
    byKey: db.prepare(`SELECT ${COLUMNS} FROM targets WHERE repository = ? AND branch = ? AND image = ? AND keyword = ?`),
    byId: db.prepare(`SELECT ${COLUMNS} FROM targets WHERE id = ?`),
    insert: db.prepare(`INSERT INTO targets (repository, branch, image, keyword, desired_tag, desired_digest, batch_id,
        requested_by, requested_at, request_trace, status, next_attempt_at, created_at, updated_at)
      VALUES (@repository, @branch, @image, @keyword, @tag, @digest, @batchId,
        @requestedBy, @at, @traceparent, 'pending', @at, @at, @at)`),
    request: db.prepare(`UPDATE targets SET desired_tag = @tag, desired_digest = @digest, generation = generation + 1,
        batch_id = @batchId, requested_by = @requestedBy, requested_at = @at, request_trace = @traceparent,
        status = 'pending', attempts = 0, next_attempt_at = @at, last_error_code = NULL, last_error_message = NULL,
        updated_at = @at
      WHERE id = @id`),
    event: db.prepare(`INSERT INTO events (target_id, at, type, tag, digest, message, details, trace_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    events: db.prepare(`SELECT id, target_id AS targetId, at, type, tag, digest, message, details, trace_id AS traceId
      FROM events WHERE target_id = ? ORDER BY id`),
    migrationCount: db.prepare('SELECT count(*) AS n FROM schema_migrations').pluck(),
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

  function recordOne(update: UpdateRequest, meta: RequestMeta): { change: Change; target: Target } {
    const existing = q.byKey.get(update.repository, update.branch, update.image, update.keyword) as Target | undefined;
    const change = decideChange(existing, update);
    const traceId = traceIdOf(meta.traceparent);
    const params = { ...update, ...meta };
    let id: number;
    if (!existing) {
      id = Number(q.insert.run(params).lastInsertRowid);
    } else {
      id = existing.id;
      if (change === 'unchanged') return { change, target: existing };
      if (change === 'superseded') {
        addEvent(id, meta.at, 'superseded', {
          tag: existing.desiredTag,
          digest: existing.desiredDigest,
          message: `superseded by ${update.tag}${update.digest ? `@${update.digest}` : ''}`,
          traceId,
        });
      }
      q.request.run({ ...params, id });
    }
    addEvent(id, meta.at, 'requested', {
      tag: update.tag,
      digest: update.digest,
      message: change === 'retried' ? 'requested again after a failure: retrying' : undefined,
      details: { by: meta.requestedBy, ...(meta.batchId ? { batchId: meta.batchId } : {}) },
      traceId,
    });
    return { change, target: q.byId.get(id) as Target };
  }

  return {
    db,
    /** The migrations this open applied (empty when the database was up to date). */
    appliedMigrations,

    /** Records a request's updates atomically; resolves once they are durable on disk. */
    recordUpdates(updates: UpdateRequest[], meta: RequestMeta): Promise<Array<{ change: Change; target: Target }>> {
      return group.run(() => updates.map((update) => recordOne(update, meta)));
    },

    getTarget(id: number, scope: ReadScope): Target | undefined {
      const target = q.byId.get(id) as Target | undefined;
      if (!target || (scope && !(scope.repository.test(target.repository) && scope.image.test(target.image) && scope.keyword.test(target.keyword)))) {
        return undefined;
      }
      return target;
    },

    /** Targets matching the filter in id order, one page; `next` is the cursor for the following page. */
    listTargets(filter: TargetFilter, scope: ReadScope): { targets: Target[]; next: number | null } {
      const where: string[] = ['id > @after'];
      const params: Record<string, string | number> = { after: filter.after ?? 0, limit: filter.limit + 1 };
      for (const key of ['status', 'repository', 'branch', 'image', 'keyword'] as const) {
        const value = filter[key];
        if (value !== undefined) {
          where.push(`${key} = @${key}`);
          params[key] = value;
        }
      }
      if (scope) {
        where.push('regexp(@scopeRepository, repository)', 'regexp(@scopeImage, image)', 'regexp(@scopeKeyword, keyword)');
        params.scopeRepository = scope.repository.source;
        params.scopeImage = scope.image.source;
        params.scopeKeyword = scope.keyword.source;
      }
      const rows = db
        .prepare(`SELECT ${COLUMNS} FROM targets WHERE ${where.join(' AND ')} ORDER BY id LIMIT @limit`)
        .all(params) as Target[];
      const more = rows.length > filter.limit;
      const targets = more ? rows.slice(0, filter.limit) : rows;
      return { targets, next: more ? targets[targets.length - 1]!.id : null };
    },

    listEvents(targetId: number): TargetEvent[] {
      return (q.events.all(targetId) as Array<TargetEvent & { details: string | null }>).map((row) => ({
        ...row,
        details: row.details ? (JSON.parse(row.details) as Record<string, unknown>) : null,
      }));
    },

    /** True while the database answers and every known migration is applied. */
    isReady(): boolean {
      try {
        return (q.migrationCount.get() as number) === migrations.length && pendingMigrations(db, migrations).length === 0;
      } catch {
        return false;
      }
    },

    /** Commits queued writes, then closes the database. */
    async close(): Promise<void> {
      await group.drain();
      if (db.open) db.close();
    },
  };
}

export type Store = ReturnType<typeof openStore>;
