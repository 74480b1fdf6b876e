// The store: the main thread's connection for reads and migrations, and the
// writer thread (writer.ts) for the requests' durable writes.
import { COLUMNS, openDatabase, type Synchronous, type Target, type TargetEvent } from './database.ts';
import type { TargetStatus } from './desired-state.ts';
import { migrate, pendingMigrations, readMigrations, type Migration } from './migrate.ts';
import type { RecordResult, RequestMeta, UpdateRequest } from './record-updates.ts';
import { startWriter } from './writer.ts';

export type { Target, TargetEvent } from './database.ts';
export type { RequestMeta, UpdateRequest } from './record-updates.ts';

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
  synchronous: Synchronous;
  migrations?: Migration[];
}

/** Opens (creating if needed) the database file, applies migrations, and starts the writer thread. */
export function openStore(file: string, options: StoreOptions) {
  const db = openDatabase(file, options.synchronous);
  const migrations = options.migrations ?? readMigrations();
  const appliedMigrations = migrate(db, migrations);
  const writer = startWriter(file, options.synchronous);
  const q = {
    byId: db.prepare(`SELECT ${COLUMNS} FROM targets WHERE id = ?`),
    events: db.prepare(`SELECT id, target_id AS targetId, at, type, tag, digest, message, details, trace_id AS traceId
      FROM events WHERE target_id = ? ORDER BY id`),
    countsByStatus: db.prepare('SELECT status, count(*) AS count FROM targets GROUP BY status'),
    oldestWaiting: db.prepare(`SELECT min(requested_at) FROM targets WHERE status IN ('pending', 'awaiting_mirror')`).pluck(),
    makeDue: db.prepare(`UPDATE targets SET next_attempt_at = @now
      WHERE status IN ('pending', 'awaiting_mirror') AND next_attempt_at > @now AND (@repository IS NULL OR repository = @repository)`),
  };

  return {
    db,
    /** The migrations this open applied (empty when the database was up to date). */
    appliedMigrations,

    /** Records a request's updates atomically; resolves once they are durable on disk. */
    recordUpdates(updates: UpdateRequest[], meta: RequestMeta): Promise<RecordResult[]> {
      return writer.record(updates, meta);
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

    /** Makes every pending target (of one repository, or all) due now, cutting short its backoff; returns how many. */
    makeDue(repository: string | null, now: number): number {
      return q.makeDue.run({ repository, now }).changes;
    },

    listEvents(targetId: number): TargetEvent[] {
      return (q.events.all(targetId) as Array<TargetEvent & { details: string | null }>).map((row) => ({
        ...row,
        details: row.details ? (JSON.parse(row.details) as Record<string, unknown>) : null,
      }));
    },

    /** How many targets have each status (for the targets gauge). */
    countsByStatus(): Array<{ status: string; count: number }> {
      return q.countsByStatus.all() as Array<{ status: string; count: number }>;
    },

    /** When the oldest target still waiting to be synced was requested, or null when none waits. */
    oldestWaitingRequestedAt(): number | null {
      return (q.oldestWaiting.get() as number | null) ?? null;
    },

    /** True while the database answers and every known migration is applied. */
    isReady(): boolean {
      try {
        // Throws for a database ahead of this code or an edited migration: not ready either.
        return pendingMigrations(db, migrations).length === 0;
      } catch {
        return false;
      }
    },

    /** Commits queued writes, then closes the database. */
    async close(): Promise<void> {
      await writer.close();
      if (db.open) db.close();
    },
  };
}

export type Store = ReturnType<typeof openStore>;
