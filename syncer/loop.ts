// The syncer loop: wakes on a new desired tag (in-process notify) or a poll,
// waits a short quiet window so requests that arrive together share a commit,
// syncs due repository+branch groups in parallel (one sync per group at a
// time), and records each outcome in one transaction.
import type { Config } from '../shared/config.ts';
import { SyncError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { metrics } from '../shared/metrics.ts';
import { ATTR, inSpan, linkTo, tracer } from '../shared/telemetry.ts';
import type { Link } from '@opentelemetry/api';
import type { DueTarget, SyncRecord, SyncRecords } from '../shared/sync-records.ts';
import { createMarkerIndex } from './marker-index.ts';
import { createMirror, type Mirror } from './mirror.ts';
import { syncRepository, type SyncOptions } from './sync-repository.ts';
import { createGitHub, type GitHub } from './github.ts';
import { githubRepository } from '../shared/config.ts';

/** The longest a steady stream of requests may hold a sync back. */
export const MAX_QUIET_MS = 2000;

export interface LoopDeps {
  config: Config;
  records: SyncRecords;
  log: Logger;
  now?: () => number;
  /** The mirror step (DESIGN §5 step 2); by default made from `config.mirror` (none when its mode is off). */
  mirror?: Mirror;
}

function sleep(ms: number, signal: AbortSignal, wake: Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
    void wake.then(done);
  });
}

/** Creates the loop; `run` drives it until the signal aborts, `notify` wakes it. */
export function createSyncLoop(deps: LoopDeps) {
  const { config, records, log } = deps;
  const now = deps.now ?? Date.now;
  const repositories = new Map(config.repositories.map((r) => [r.name, r]));
  const busy = new Set<string>();
  const cleaned = new Set<string>();
  const markerIndex = createMarkerIndex();
  const mirror = deps.mirror ?? (config.mirror.mode === 'off' ? undefined : createMirror({ config, records, log, now }));
  const running = new Set<Promise<void>>();
  // A wake that comes while the loop is busy must not be lost: it is a flag, checked before sleeping.
  let woken = false;
  let wakeUp: () => void = () => {};

  function wake(): void {
    woken = true;
    wakeUp();
  }

  function record(result: SyncRecord): void {
    const t0 = performance.now();
    tracer.startActiveSpan('record', (span) => {
      try {
        records.record(result);
      } finally {
        span.end();
        metrics.stepDuration.labels('record').observe((performance.now() - t0) / 1000);
      }
    });
    mirror?.afterSync(result);
    count(result);
    for (const r of result.results) {
      const fields = { targetId: r.target.id, repository: result.repository, branch: result.branch, image: r.target.image, tag: r.target.desiredTag };
      if (r.kind === 'synced') log.info({ ...fields, commit: r.commit, committed: r.committed }, 'target synced');
      else if (r.kind === 'failed') log.warn({ ...fields, code: r.error.code, reason: r.error.message }, 'target failed');
      else if (r.kind === 'proposed') log.info({ ...fields, pullRequest: r.url, commit: r.commit }, 'target proposed');
      else if (r.kind === 'waiting') log.info({ ...fields, reason: r.message, retryAt: new Date(r.retryAt).toISOString() }, 'target awaiting mirror');
      else log.info({ ...fields, code: r.error.code, reason: r.error.message, retryAt: new Date(r.retryAt).toISOString() }, 'target will retry');
    }
  }

  // Pull requests are looked at on their own schedule, one pass at a time.
  const githubClients = new Map<string, GitHub>();
  const lastLook = new Map<string, number>();
  let looking: Promise<void> | undefined;

  /**
   * Looks at every open pull request some target waits on (each repository at its
   * pullRequest.pollInterval, or all when `force`): merged → its targets are due again and
   * the next sync marks them synced; closed unmerged → they fail with PR_CLOSED.
   */
  async function lookAtPullRequests(force: boolean): Promise<void> {
    const at = now();
    let due = false;
    for (const p of records.openProposals()) {
      const repo = repositories.get(p.repository);
      const pr = repo?.writeBack === 'pull-request' ? repo.pullRequest : undefined;
      if (!repo || !pr) continue;
      const key = `${p.repository}\u0000${p.branch}\u0000${p.number}`;
      if (!force && at - (lastLook.get(key) ?? 0) < pr.pollInterval) continue;
      lastLook.set(key, at);
      let github = githubClients.get(p.repository);
      if (!github) githubClients.set(p.repository, (github = createGitHub({ apiUrl: pr.github.apiUrl, token: pr.github.token })));
      const [owner, name] = (pr.github.repository ?? githubRepository(repo.url)!).split('/') as [string, string];
      try {
        const state = await github.pullRequestState(owner, name, p.number);
        if (state.state === 'merged') {
          const n = records.proposalMerged({ ...p, mergeCommit: state.mergeCommit }, now());
          log.info({ repository: p.repository, branch: p.branch, pullRequest: p.url, targets: n }, 'pull request merged');
          due = true;
        } else if (state.state === 'closed') {
          const n = records.proposalClosed(p, now());
          metrics.updates.labels('failed', 'PR_CLOSED').inc(n);
          log.warn({ repository: p.repository, branch: p.branch, pullRequest: p.url, targets: n }, 'pull request closed without merging');
        }
      } catch (err) {
        log.warn({ repository: p.repository, pullRequest: p.url, reason: (err as Error).message }, 'cannot look at the pull request');
      }
    }
    if (due) wake();
  }

  function lookSoon(force = false): Promise<void> {
    looking ??= lookAtPullRequests(force).finally(() => (looking = undefined));
    return looking;
  }

  /** The metrics of a recorded sync: outcomes, commits, lead times, and the last success. */
  function count(result: SyncRecord): void {
    const at = now();
    for (const r of result.results) {
      const result_ = r.kind === 'waiting' ? 'awaiting_mirror' : r.kind;
      metrics.updates.labels(result_, r.kind === 'failed' || r.kind === 'retry' ? r.error.code : 'none').inc();
      if (r.kind === 'synced' && r.committed) metrics.leadTime.observe(Math.max(0, at - r.target.requestedAt) / 1000);
    }
    for (const c of result.commits) metrics.commits.labels(c.mode).inc();
    const ok = !result.results.some((r) => r.kind === 'retry');
    metrics.syncs.labels(result.repository, ok ? 'ok' : 'failed').inc();
    if (ok) metrics.lastSuccess.labels(result.repository, result.branch).set(at / 1000);
  }

  /**
   * Syncs one group and records it, as one trace: a root span linked to the request spans
   * of its targets, with the load of the targets (`loaded`: when it started and ended), every
   * step, and the record as children. A failure here is a bug, logged and retried later.
   */
  function syncGroup(
    repository: string,
    branch: string,
    targets: DueTarget[],
    signal: AbortSignal | undefined,
    options: SyncOptions,
    loaded?: { start: number; end: number },
  ): Promise<SyncRecord & { diff?: string }> {
    const links = targets.flatMap((t): Link[] => {
      const link = linkTo(t.requestTrace, { [ATTR.targetId]: t.id, [ATTR.image]: t.image, [ATTR.tag]: t.desiredTag });
      return link ? [link] : [];
    });
    const attributes = {
      [ATTR.repository]: repository,
      [ATTR.branch]: branch,
      [ATTR.targets]: targets.length,
      [ATTR.images]: targets.map((t) => t.image),
      [ATTR.tags]: targets.map((t) => t.desiredTag),
      [ATTR.keywords]: [...new Set(targets.map((t) => t.keyword))],
    };
    return inSpan('sync', { attributes, links }, async (span) => {
      if (loaded) tracer.startSpan('targets.load', { startTime: loaded.start, attributes: { [ATTR.targets]: targets.length } }).end(loaded.end);
      const result = await syncGroupInSpan(repository, branch, targets, signal, options);
      if (span.isRecording()) {
        const codes = [...new Set(result.results.flatMap((r) => (r.kind === 'failed' || r.kind === 'retry' ? [r.error.code] : [])))];
        span.setAttributes({
          [ATTR.commits]: result.commits.map((c) => c.sha),
          'image_updater.synced': result.results.filter((r) => r.kind === 'synced').length,
          'image_updater.failed': result.results.filter((r) => r.kind === 'failed').length,
          'image_updater.retry': result.results.filter((r) => r.kind === 'retry').length,
          'image_updater.awaiting_mirror': result.results.filter((r) => r.kind === 'waiting').length,
          ...(codes.length ? { [ATTR.errorCodes]: codes } : {}),
        });
      }
      return result;
    });
  }

  async function syncGroupInSpan(repository: string, branch: string, targets: DueTarget[], signal: AbortSignal | undefined, options: SyncOptions): Promise<SyncRecord & { diff?: string }> {
    const repo = repositories.get(repository);
    if (!repo) {
      const error = new SyncError('SYNC_FAILED', `repository "${repository}" is no longer configured; add it back or delete its targets`);
      const result: SyncRecord = { repository, branch, at: now(), commits: [], results: targets.map((target) => ({ kind: 'failed', target, error: { code: error.code, message: error.message } })) };
      if (!options.dryRun) record(result);
      return result;
    }
    // A pull request holds every change still waiting for its merge, not just the new ones.
    const proposed = repo.writeBack === 'pull-request' ? records.proposedTargets(repository, branch).filter((p) => !targets.some((t) => t.id === p.id)) : [];
    const result = await syncRepository({ config, log, now, cleaned, markerIndex, ...(signal ? { signal } : {}), ...(mirror ? { mirror } : {}) }, repo, branch, [...targets, ...proposed], options);
    if (!options.dryRun) record(result);
    return result;
  }

  /**
   * Starts a sync for every due group that is ready and not already syncing, up to the
   * concurrency limit. A group is ready once its newest request is `quietWindow` old (so
   * requests that arrive together share a commit), or its oldest is MAX_QUIET_MS old (so a
   * steady stream cannot hold it back). Returns when the next waiting group becomes ready.
   */
  function pass(signal: AbortSignal): number | null {
    let nextReady: number | null = null;
    const at = now();
    const loadStart = performance.timeOrigin + performance.now();
    const groups = records.dueGroups(at);
    const loaded = { start: loadStart, end: performance.timeOrigin + performance.now() };
    for (const group of groups) {
      const key = `${group.repository}\u0000${group.branch}`;
      if (busy.has(key) || running.size >= config.syncer.concurrency) continue;
      const requested = group.targets.map((t) => t.requestedAt);
      const ready = Math.min(Math.max(...requested) + config.syncer.quietWindow, Math.min(...requested) + MAX_QUIET_MS);
      if (ready > at) {
        nextReady = Math.min(nextReady ?? ready, ready);
        continue;
      }
      busy.add(key);
      const job = syncGroup(group.repository, group.branch, group.targets, signal, {}, loaded)
        .then(
          // Requests may have arrived meanwhile, and groups may have waited for a free slot.
          () => true,
          (err: unknown) => {
            // Not woken again: a crash that repeats is retried at the poll interval, not in a tight loop.
            log.error({ err, repository: group.repository, branch: group.branch }, 'sync crashed');
            return false;
          },
        )
        .then((again) => {
          busy.delete(key);
          running.delete(job);
          if (again) wake();
        });
      running.add(job);
    }
    return nextReady;
  }

  return {
    /** A new desired tag was recorded: look now (its group syncs once the quiet window has passed). */
    notify(): void {
      wake();
    },

    /**
     * Runs until `signal` aborts, then lets the syncs in flight finish: their git and
     * validation processes are only killed if they outlast `server.shutdownTimeout`.
     */
    async run(signal: AbortSignal): Promise<void> {
      const hard = new AbortController();
      log.info({ concurrency: config.syncer.concurrency, quietWindowMs: config.syncer.quietWindow }, 'syncer started');
      while (!signal.aborted) {
        void lookSoon();
        const nextReady = pass(hard.signal);
        const nextDue = records.nextDueAt();
        const at = now();
        // Due now but not started (its group is syncing, or no slot is free): a finishing sync wakes us.
        const untilDue = nextDue === null || nextDue <= at ? Infinity : nextDue - at;
        const untilReady = nextReady === null ? Infinity : nextReady - at;
        const wait = Math.min(config.syncer.pollInterval, untilDue, untilReady);
        if (!woken) await sleep(wait, signal, new Promise<void>((r) => (wakeUp = r)));
        woken = false;
      }
      log.info({ inFlight: running.size, timeoutMs: config.server.shutdownTimeout }, 'syncer stopping: waiting for syncs in flight');
      const timer = setTimeout(() => {
        log.warn({ inFlight: running.size }, 'syncs still running at the shutdown timeout: aborting them');
        hard.abort();
      }, config.server.shutdownTimeout);
      await Promise.allSettled([...running]);
      await looking;
      await mirror?.idle();
      clearTimeout(timer);
    },

    /** One pass over every pending target, ignoring retry times; resolves with what each group produced. */
    async once(options: SyncOptions = {}): Promise<Array<SyncRecord & { diff?: string }>> {
      // Merged or closed pull requests first: a merge makes its targets due for this pass.
      if (!options.dryRun) await lookSoon(true);
      const results = [];
      const loadStart = performance.timeOrigin + performance.now();
      const groups = records.dueGroups(Number.MAX_SAFE_INTEGER);
      const loaded = { start: loadStart, end: performance.timeOrigin + performance.now() };
      for (const group of groups) {
        results.push(await syncGroup(group.repository, group.branch, group.targets, undefined, options, loaded));
      }
      await mirror?.idle();
      return results;
    },
  };
}

export type SyncLoop = ReturnType<typeof createSyncLoop>;
