// The syncer's reads and writes: which targets are due, and the outcome of
// one sync recorded in one transaction (targets, events, commits).
import type { Database } from 'better-sqlite3';
import type { Target } from './database.ts';
import { isRepositoryFailure, REPOSITORY_FAILURES_SQL } from './errors.ts';

/** A target as the syncer needs it; `confirmedDigest` is what the mirror holds for its tag, once confirmed. */
export type DueTarget = Pick<
  Target,
  | 'id'
  | 'generation'
  | 'repository'
  | 'branch'
  | 'image'
  | 'keyword'
  | 'desiredTag'
  | 'desiredDigest'
  | 'attempts'
  | 'requestedAt'
  | 'requestTrace'
  | 'status'
  | 'proposalUrl'
> & { confirmedDigest?: string };

export interface SyncErrorInfo {
  code: string;
  message: string;
}

/** What became of one target in a sync. */
export type TargetResult =
  | { kind: 'synced'; target: DueTarget; commit: string; committed: boolean; fromTags: string[] }
  | { kind: 'failed'; target: DueTarget; error: SyncErrorInfo }
  | { kind: 'retry'; target: DueTarget; error: SyncErrorInfo; retryAt: number }
  /** The image is not in the mirror (or its source) yet: `awaiting_mirror` until `retryAt`. */
  | { kind: 'waiting'; target: DueTarget; message: string; retryAt: number }
  /** Pull-request write-back: the change is in the pull request, at its head commit. */
  | { kind: 'proposed'; target: DueTarget; commit: string; number: number; url: string };

/** A step of a target's history other than its outcome (the mirror's `mirror_confirmed`, `mirrored`). */
export interface StepEvent {
  targetId: number;
  type: string;
  tag: string;
  digest: string | null;
  message: string;
  details: object | null;
}

/** A tag the mirror now holds, confirmed or copied by this sync. */
export interface MirrorTag {
  repository: string;
  tag: string;
  digest: string;
  image: string;
}

export interface CommitRecord {
  sha: string;
  mode: 'batch' | 'single';
  targetIds: number[];
}

/** Everything one sync of a repository+branch produced. */
export interface SyncRecord {
  repository: string;
  branch: string;
  at: number;
  commits: CommitRecord[];
  results: TargetResult[];
  /** Steps before the outcome, recorded first. */
  events?: StepEvent[];
  mirrorTags?: MirrorTag[];
  traceId?: string | null;
}

const DUE_COLUMNS = `id, generation, repository, branch, image, keyword, desired_tag AS desiredTag,
  desired_digest AS desiredDigest, attempts, requested_at AS requestedAt, request_trace AS requestTrace, status,
  proposal_url AS proposalUrl`;

/** Whether a sync got through to the repository: something landed, was proposed or failed on its own, and no repository failure. */
function reachedRepository(sync: SyncRecord): boolean {
  return (
    sync.results.some((r) => r.kind === 'synced' || r.kind === 'proposed' || r.kind === 'failed') &&
    !sync.results.some((r) => (r.kind === 'failed' || r.kind === 'retry') && isRepositoryFailure(r.error.code))
  );
}

/** Prepares the syncer's statements on a connection. */
export function createSyncRecords(db: Database) {
  const q = {
    due: db.prepare(`SELECT ${DUE_COLUMNS} FROM targets
      WHERE status IN ('pending', 'awaiting_mirror') AND next_attempt_at <= ? ORDER BY repository, branch, id`),
    nextDue: db.prepare(`SELECT min(next_attempt_at) FROM targets WHERE status IN ('pending', 'awaiting_mirror')`).pluck(),
    commit: db.prepare('INSERT INTO commits (repository, branch, sha, mode, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (repository, sha) DO UPDATE SET at = at RETURNING id').pluck(),
    commitTarget: db.prepare('INSERT OR IGNORE INTO commit_targets (commit_id, target_id, from_tag, to_tag) VALUES (?, ?, ?, ?)'),
    synced: db.prepare(`UPDATE targets SET status = 'synced', applied_tag = desired_tag, applied_digest = coalesce(@digest, desired_digest),
        applied_commit = @commit, applied_at = @at, attempts = 0, last_error_code = NULL, last_error_message = NULL, updated_at = @at
      WHERE id = @id AND generation = @generation`),
    failed: db.prepare(`UPDATE targets SET status = 'failed', attempts = attempts + 1, last_error_code = @code,
        last_error_message = @message, updated_at = @at
      WHERE id = @id AND generation = @generation`),
    retry: db.prepare(`UPDATE targets SET status = 'pending', attempts = attempts + 1, next_attempt_at = @retryAt, last_error_code = @code,
        last_error_message = @message, updated_at = @at
      WHERE id = @id AND generation = @generation`),
    waiting: db.prepare(`UPDATE targets SET status = 'awaiting_mirror', next_attempt_at = @retryAt,
        last_error_code = NULL, last_error_message = NULL, updated_at = @at
      WHERE id = @id AND generation = @generation`),
    mirrorTag: db.prepare(`INSERT INTO mirror_tags (repository, tag, digest, image, recorded_at) VALUES (@repository, @tag, @digest, @image, @at)
      ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest`),
    proposed: db.prepare(`UPDATE targets SET status = 'proposed', proposal_number = @number, proposal_url = @url, attempts = 0,
        last_error_code = NULL, last_error_message = NULL, updated_at = @at
      WHERE id = @id AND generation = @generation`),
    proposedTargets: db.prepare(`SELECT ${DUE_COLUMNS} FROM targets WHERE status = 'proposed' AND repository = ? AND branch = ? ORDER BY id`),
    openProposals: db.prepare(`SELECT DISTINCT repository, branch, proposal_number AS number, proposal_url AS url FROM targets
      WHERE status = 'proposed' AND proposal_number IS NOT NULL ORDER BY repository, branch`),
    inProposal: db.prepare(`SELECT id, desired_tag AS tag FROM targets WHERE status = 'proposed' AND repository = ? AND branch = ? AND proposal_number = ?`),
    merged: db.prepare(`UPDATE targets SET status = 'pending', next_attempt_at = @at, updated_at = @at WHERE id = @id AND status = 'proposed'`),
    closed: db.prepare(`UPDATE targets SET status = 'failed', last_error_code = 'PR_CLOSED', last_error_message = @message, updated_at = @at
      WHERE id = @id AND status = 'proposed'`),
    mirrorTags: db.prepare('SELECT tag, digest FROM mirror_tags WHERE repository = ? ORDER BY recorded_at DESC, rowid DESC'),
    forgetMirrorTag: db.prepare('DELETE FROM mirror_tags WHERE repository = ? AND tag = ?'),
    wantedTags: db.prepare('SELECT desired_tag AS desired, applied_tag AS applied FROM targets WHERE image = ?'),
    event: db.prepare(`INSERT INTO events (target_id, at, type, tag, digest, message, details, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    // After a repository failure: every pending target of the repository+branch waits for the same retry
    // (requests that came during the sync included), so the next attempt is one sync, not one per target.
    hold: db.prepare(`UPDATE targets SET next_attempt_at = @retryAt, last_error_code = @code, last_error_message = @message, updated_at = @at
      WHERE repository = @repository AND branch = @branch AND status = 'pending' AND next_attempt_at < @retryAt`),
    // The targets of a repository+branch still waiting out a repository failure (codes: isRepositoryFailure).
    release: db.prepare(`UPDATE targets SET next_attempt_at = @at
      WHERE repository = @repository AND branch = @branch AND status = 'pending' AND next_attempt_at > @at
        AND last_error_code IN (${REPOSITORY_FAILURES_SQL})`),
    // Whether the mirror already holds (confirmed or copied) this tag and digest for the target's latest request.
    mirrorKnown: db.prepare(`SELECT 1 FROM events WHERE target_id = @targetId AND type IN ('mirror_confirmed', 'mirrored')
        AND tag = @tag AND digest IS @digest
        AND id > coalesce((SELECT max(id) FROM events WHERE target_id = @targetId AND type = 'requested'), 0)`).pluck(),
  };

  function event(targetId: number, at: number, type: string, tag: string | null, message: string | null, details: object | null, traceId: string | null, digest: string | null = null) {
    q.event.run(targetId, at, type, tag, digest, message, details ? JSON.stringify(details) : null, traceId);
  }

  const record = db.transaction((sync: SyncRecord) => {
    const traceId = sync.traceId ?? null;
    for (const m of sync.mirrorTags ?? []) q.mirrorTag.run({ ...m, at: sync.at });
    for (const e of sync.events ?? []) {
      // A sync retried (say, after a rejected push) confirms the mirror again: that is no news for the audit trail.
      if (e.type === 'mirror_confirmed' && q.mirrorKnown.get({ targetId: e.targetId, tag: e.tag, digest: e.digest })) continue;
      event(e.targetId, sync.at, e.type, e.tag, e.message, e.details, traceId, e.digest);
    }
    const commitOf = new Map<number, CommitRecord>();
    for (const c of sync.commits) {
      const id = q.commit.get(sync.repository, sync.branch, c.sha, c.mode, sync.at) as number;
      for (const targetId of c.targetIds) commitOf.set(targetId, c);
      for (const r of sync.results) {
        if (r.kind === 'synced' && c.targetIds.includes(r.target.id)) {
          q.commitTarget.run(id, r.target.id, r.fromTags.join(', ') || null, r.target.desiredTag);
        }
      }
    }
    for (const r of sync.results) {
      const t = r.target;
      const key = { id: t.id, generation: t.generation, at: sync.at };
      if (r.kind === 'synced') {
        const c = commitOf.get(t.id);
        if (r.committed && c) {
          event(t.id, sync.at, 'committed', t.desiredTag, `committed ${c.sha.slice(0, 12)} (${c.mode})`, { sha: c.sha, mode: c.mode, from: r.fromTags }, traceId);
          event(t.id, sync.at, 'pushed', t.desiredTag, `pushed to ${sync.branch}`, { sha: c.sha }, traceId);
        }
        // A newer request during the sync keeps the target pending for its new tag.
        if (q.synced.run({ ...key, commit: r.commit, digest: t.confirmedDigest ?? null }).changes === 1) {
          event(t.id, sync.at, 'synced', t.desiredTag, r.committed ? null : `already at ${t.desiredTag} in ${r.commit.slice(0, 12)}`, { commit: r.commit }, traceId, t.confirmedDigest ?? t.desiredDigest);
        }
      } else if (r.kind === 'failed') {
        if (q.failed.run({ ...key, ...r.error }).changes === 1) {
          event(t.id, sync.at, 'failed', t.desiredTag, r.error.message, { code: r.error.code, transient: false }, traceId);
        }
      } else if (r.kind === 'proposed') {
        // Re-proposing in the same pull request (it grew) is not news; a new one is.
        if (q.proposed.run({ ...key, number: r.number, url: r.url }).changes === 1 && (t.status !== 'proposed' || t.proposalUrl !== r.url)) {
          event(t.id, sync.at, 'proposed', t.desiredTag, `proposed in pull request #${r.number}: ${r.url}`, { number: r.number, url: r.url, commit: r.commit }, traceId);
        }
      } else if (r.kind === 'waiting') {
        // The event marks the start of the wait; later looks only move the next attempt.
        if (q.waiting.run({ ...key, retryAt: r.retryAt }).changes === 1 && t.status !== 'awaiting_mirror') {
          event(t.id, sync.at, 'awaiting_mirror', t.desiredTag, r.message, { nextLookAt: new Date(r.retryAt).toISOString() }, traceId);
        }
      } else if (q.retry.run({ ...key, ...r.error, retryAt: r.retryAt }).changes === 1) {
        event(t.id, sync.at, 'failed', t.desiredTag, r.error.message, { code: r.error.code, transient: true, retryAt: new Date(r.retryAt).toISOString() }, traceId);
      }
    }
    // The repository answered again: whatever waited out its failure is due now, not at its own backoff.
    if (reachedRepository(sync)) q.release.run({ repository: sync.repository, branch: sync.branch, at: sync.at });
    const failure = sync.results.find((r): r is Extract<TargetResult, { kind: 'retry' }> => r.kind === 'retry' && isRepositoryFailure(r.error.code));
    if (failure) q.hold.run({ repository: sync.repository, branch: sync.branch, at: sync.at, retryAt: failure.retryAt, ...failure.error });
  });

  return {
    /** Targets due now, grouped by repository and branch. */
    dueGroups(now: number): Array<{ repository: string; branch: string; targets: DueTarget[] }> {
      const groups = new Map<string, { repository: string; branch: string; targets: DueTarget[] }>();
      for (const t of q.due.all(now) as DueTarget[]) {
        const key = `${t.repository}\u0000${t.branch}`;
        let group = groups.get(key);
        if (!group) groups.set(key, (group = { repository: t.repository, branch: t.branch, targets: [] }));
        group.targets.push(t);
      }
      return [...groups.values()];
    },

    /** When the next pending target becomes due, or null when none is pending. */
    nextDueAt(): number | null {
      return (q.nextDue.get() as number | null) ?? null;
    },

    /** The targets of a repository and branch whose change waits in a pull request. */
    proposedTargets(repository: string, branch: string): DueTarget[] {
      return q.proposedTargets.all(repository, branch) as DueTarget[];
    },

    /** Every open pull request some target waits on. */
    openProposals(): Array<{ repository: string; branch: string; number: number; url: string }> {
      return q.openProposals.all() as Array<{ repository: string; branch: string; number: number; url: string }>;
    },

    /**
     * A pull request was merged: its targets become due again, so that the next sync finds
     * their tags on the branch and marks them synced (or proposes what the merge left out).
     */
    proposalMerged: db.transaction((p: { repository: string; branch: string; number: number; url: string; mergeCommit: string | null }, at: number): number => {
      let n = 0;
      for (const t of q.inProposal.all(p.repository, p.branch, p.number) as Array<{ id: number; tag: string }>) {
        if (q.merged.run({ id: t.id, at }).changes === 1) {
          n++;
          event(t.id, at, 'merged', t.tag, `pull request #${p.number} was merged`, { number: p.number, url: p.url, mergeCommit: p.mergeCommit }, null);
        }
      }
      return n;
    }),

    /** A pull request was closed without merging: its targets fail with PR_CLOSED. */
    proposalClosed: db.transaction((p: { repository: string; branch: string; number: number; url: string }, at: number): number => {
      const message = `pull request #${p.number} (${p.url}) was closed without being merged; send the update again to propose it anew`;
      let n = 0;
      for (const t of q.inProposal.all(p.repository, p.branch, p.number) as Array<{ id: number; tag: string }>) {
        if (q.closed.run({ id: t.id, at, message }).changes === 1) {
          n++;
          event(t.id, at, 'failed', t.tag, message, { code: 'PR_CLOSED', transient: false, number: p.number }, null);
        }
      }
      return n;
    }),

    /** The tags recorded in a mirror repository, newest first. */
    mirrorTags(repository: string): Array<{ tag: string; digest: string }> {
      return q.mirrorTags.all(repository) as Array<{ tag: string; digest: string }>;
    },

    forgetMirrorTag(repository: string, tag: string): void {
      q.forgetMirrorTag.run(repository, tag);
    },

    /** Every tag of an image that a target wants or runs, in any repository and branch. */
    wantedTags(image: string): Set<string> {
      const tags = new Set<string>();
      for (const row of q.wantedTags.all(image) as Array<{ desired: string; applied: string | null }>) {
        tags.add(row.desired);
        if (row.applied) tags.add(row.applied);
      }
      return tags;
    },

    /** Records a sync's commits and outcomes atomically. */
    record(sync: SyncRecord): void {
      record.immediate(sync);
    },
  };
}

export type SyncRecords = ReturnType<typeof createSyncRecords>;
