// One sync of a repository+branch (DESIGN §5, steps 2–8): working copy, one
// ripgrep call, the plan, edit and validate, one commit and push with retries
// on rejection, and one commit per image when the batch cannot land. The
// caller records the returned outcomes in one transaction (step 9).
import { chmodSync, lstatSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { backoffMs } from '../shared/backoff.ts';
import type { Config, RepositoryConfig } from '../shared/config.ts';
import { SyncError } from '../shared/errors.ts';
import { redactText, type Logger } from '../shared/log.ts';
import { metrics } from '../shared/metrics.ts';
import { ATTR, inSpan } from '../shared/telemetry.ts';
import type { Attributes } from '@opentelemetry/api';
import type { DueTarget, SyncRecord, TargetResult } from '../shared/sync-records.ts';
import { commitMessage } from './commit-message.ts';
import { findCandidates, listSearchable } from './find-markers.ts';
import type { MarkerIndex } from './marker-index.ts';
import type { Mirror } from './mirror.ts';
import { planEdits, relevantCandidates, type PlanTarget, type TargetPlan } from './plan-edits.ts';
import { validateFiles } from './validate-files.ts';
import { workingCopy } from './working-copy.ts';
import { createGitHub, type GitHub } from './github.ts';
import { githubRepository, type PullRequestConfig } from '../shared/config.ts';

export interface SyncContext {
  config: Config;
  log: Logger;
  now: () => number;
  random?: () => number;
  /** Aborts git, ripgrep and validation child processes. */
  signal?: AbortSignal;
  /**
   * Working copies already cleaned (`git clean`) by this process; shared across syncs by the loop.
   * Without it, every sync cleans.
   */
  cleaned?: Set<string>;
  /** Candidate lines remembered across syncs (rescans only what commits changed); shared by the loop. */
  markerIndex?: MarkerIndex;
  /** The mirror step (mirror.ts); without it every image counts as confirmed. */
  mirror?: Pick<Mirror, 'confirm' | 'aliases'>;
}

export interface SyncOptions {
  /** Plan and edit, print nothing to the remote: the diff is returned and nothing is committed. */
  dryRun?: boolean;
}

/** Where a repository+branch's working copy lives under the work dir. */
export function workingCopyDir(workDir: string, repository: string, branch: string): string {
  return path.join(workDir, repository, encodeURIComponent(branch));
}

/**
 * The absolute path of a file of the working copy `dir` (whose real path is `root`), refusing
 * anything that is not a regular file inside it, reached without a symbolic link.
 */
function safePath(dir: string, root: string, relative: string): string {
  const full = path.resolve(dir, relative);
  const stat = lstatSync(full, { throwIfNoEntry: false });
  if (!full.startsWith(dir + path.sep) || !stat?.isFile() || realpathSync(path.dirname(full)) !== path.join(root, path.relative(dir, path.dirname(full)))) {
    throw new SyncError('UNSAFE_PATH', `${relative} is not a regular file inside the repository (symbolic links are never followed)`);
  }
  return full;
}

/**
 * The ssh key commits are signed with: the configured file, or the configured key written
 * (owner-only) into our git HOME, outside every working copy, so no commit or log can carry it.
 */
function signingKeyFile(repo: RepositoryConfig, workDir: string): string | undefined {
  if (repo.signing?.sshKeyFile) return repo.signing.sshKeyFile;
  if (!repo.signing?.sshKey) return undefined;
  const dir = path.join(workDir, '.home', 'signing');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = path.join(dir, `${repo.name}.key`);
  const key = repo.signing.sshKey.endsWith('\n') ? repo.signing.sshKey : `${repo.signing.sshKey}\n`;
  writeFileSync(file, key, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

// One GitHub client per repository configuration (they hold no state but their settings).
const githubClients = new WeakMap<object, GitHub>();
function githubFor(pr: PullRequestConfig): GitHub {
  let client = githubClients.get(pr);
  if (!client) githubClients.set(pr, (client = createGitHub({ apiUrl: pr.github.apiUrl, token: pr.github.token })));
  return client;
}

/** The pull request's branch for a target branch: `image-updater/main` by default. */
export function pullRequestBranch(pr: PullRequestConfig, branch: string): string {
  return pr.branch.replaceAll('{{branch}}', branch);
}

/** The pull request's description: every change it carries, and what merging or closing it does. */
export function pullRequestBody(changes: ReadonlyArray<{ image: string; from: string[]; to: string; keyword: string }>, branch: string): string {
  const rows = [...changes]
    .sort((a, b) => a.image.localeCompare(b.image) || a.keyword.localeCompare(b.keyword))
    .map((c) => `| \`${c.image}\` | ${c.from.map((f) => `\`${f}\``).join(', ') || '(none)'} | \`${c.to}\` | \`${c.keyword}\` |`);
  return [
    `image-updater proposes ${changes.length === 1 ? 'this image update' : `these ${changes.length} image updates`} for \`${branch}\`:`,
    '',
    '| image | from | to | keyword |',
    '|---|---|---|---|',
    ...rows,
    '',
    'Merging this pull request deploys them. It is updated as new updates arrive; closing it without merging fails them (`PR_CLOSED`).',
  ].join('\n');
}

function toPlanTarget(t: DueTarget, repo: RepositoryConfig, mirror: SyncContext['mirror']): PlanTarget {
  return {
    id: t.id,
    image: t.image,
    aliases: mirror?.aliases(t.image) ?? [],
    keyword: t.keyword,
    tag: t.desiredTag,
    digest: t.confirmedDigest ?? t.desiredDigest,
    pinDigest: repo.pinDigest,
  };
}

type Attempt =
  | { kind: 'done'; results: TargetResult[]; commit?: { sha: string; targetIds: number[] }; diff?: string }
  | { kind: 'invalid'; error: SyncError; results: TargetResult[]; changing: DueTarget[] }
  | { kind: 'rejected'; reason: string; results: TargetResult[]; changing: DueTarget[] };

/** Syncs due targets of one repository+branch; returns what to record. Never throws for a target's own failure. */
export async function syncRepository(
  ctx: SyncContext,
  repo: RepositoryConfig,
  branch: string,
  targets: DueTarget[],
  options: SyncOptions = {},
): Promise<SyncRecord & { diff?: string }> {
  const { config, log } = ctx;
  const random = ctx.random ?? Math.random;
  const started = ctx.now();
  const record: SyncRecord & { diff?: string } = { repository: repo.name, branch, at: started, commits: [], results: [] };
  // Time spent in each step, summed over retries and per-image commits: logged with the outcome.
  const stepMs: Record<string, number> = {};
  const searchModes: string[] = [];
  /** One step: a span (with attributes from its result), its duration metric, and its time in the log line. */
  async function step<T>(name: string, work: () => Promise<T> | T, describe?: (result: T) => Attributes): Promise<T> {
    const t0 = performance.now();
    try {
      return await inSpan(name, {}, async (span) => {
        const result = await work();
        if (describe && span.isRecording()) span.setAttributes(describe(result));
        return result;
      });
    } finally {
      const ms = performance.now() - t0;
      metrics.stepDuration.labels(name).observe(ms / 1000);
      stepMs[name] = Math.round(((stepMs[name] ?? 0) + ms) * 10) / 10;
    }
  }

  // One retry time for every target this sync leaves to retry, from the most attempts among them: retrying
  // targets of one repository+branch apart would cost one sync each, where together they cost one.
  let sharedRetryAt: number | undefined;
  const retryAt = () =>
    (sharedRetryAt ??= ctx.now() + backoffMs(Math.max(...targets.map((t) => t.attempts)) + 1, { initialMs: config.syncer.retryInitial, maxMs: config.syncer.retryMax }, random));
  const pushRejected = (reason: string) =>
    new SyncError('PUSH_REJECTED', `the push to ${branch} was rejected ${config.syncer.pushAttempts} times (${reason}); will retry`);
  const fail = (t: DueTarget, error: SyncError): TargetResult =>
    error.transient
      ? { kind: 'retry', target: t, error: { code: error.code, message: error.message }, retryAt: error.retryAfterMs !== undefined ? ctx.now() + error.retryAfterMs : retryAt() }
      : { kind: 'failed', target: t, error: { code: error.code, message: error.message } };
  const pr = repo.writeBack === 'pull-request' ? repo.pullRequest : undefined;

  const mirror = ctx.mirror ? await step('mirror', () => ctx.mirror!.confirm(targets, { dryRun: options.dryRun ?? false })) : { ready: targets, results: [], events: [], mirrorTags: [] };
  record.results.push(...mirror.results);
  record.events = mirror.events;
  record.mirrorTags = mirror.mirrorTags;
  if (mirror.ready.length === 0) return finish();

  const wc = workingCopy({
    url: repo.url,
    branch,
    dir: workingCopyDir(config.syncer.workDir, repo.name, branch),
    homeDir: path.join(config.syncer.workDir, '.home'),
    author: config.syncer.author,
    auth: repo.auth,
    signingKeyFile: signingKeyFile(repo, config.syncer.workDir),
    timeoutMs: config.syncer.gitTimeout,
    signal: ctx.signal,
  });

  /** Steps 3–7 for a set of targets: prepare, search, plan, edit, validate, commit, push. */
  function attempt(set: DueTarget[], mode: 'batch' | 'single', n: number, probe = false): Promise<Attempt> {
    const attributes = { [ATTR.mode]: mode, [ATTR.attempt]: n, [ATTR.targets]: set.length, [ATTR.images]: set.map((t) => t.image), [ATTR.tags]: set.map((t) => t.desiredTag), ...(probe ? { 'image_updater.probe': true } : {}) };
    return inSpan('sync.attempt', { attributes }, async (span) => {
      const result = await attemptSteps(set, mode, probe);
      span.setAttribute(ATTR.outcome, result.kind === 'done' ? (result.commit ? 'committed' : 'nothing to commit') : result.kind);
      if (result.kind === 'invalid') span.setAttribute(ATTR.errorCode, result.error.code);
      if (result.kind === 'done' && result.commit) span.setAttribute(ATTR.commit, result.commit.sha);
      return result;
    });
  }

  /** With `probe`, stops after validation: whether this set alone makes valid files. */
  async function attemptSteps(set: DueTarget[], mode: 'batch' | 'single', probe: boolean): Promise<Attempt> {
    const head = await step('git.prepare', () => wc.prepare({ clean: !ctx.cleaned?.has(wc.dir) }), (sha) => ({ [ATTR.commit]: sha }));
    ctx.cleaned?.add(wc.dir);
    const root = realpathSync(wc.dir);
    const byId = new Map(set.map((t) => [t.id, t]));
    const keywords = [...new Set(set.map((t) => t.keyword))];
    const planTargets = set.map((t) => toPlanTarget(t, repo, ctx.mirror));
    const found = await step(
      'search',
      () =>
      ctx.markerIndex
        ? ctx.markerIndex.find(wc.dir, head, repo.include, keywords, {
            find: (kws, paths) => findCandidates(wc.dir, kws, repo.include, ctx.signal, paths),
            listSearchable: () => listSearchable(wc.dir, repo.include, ctx.signal),
            changes: (from, to) => wc.changes(from, to),
          })
        : findCandidates(wc.dir, keywords, repo.include, ctx.signal).then((candidates) => ({ candidates, mode: 'full' as const })),
      (r) => ({ [ATTR.keywords]: keywords, 'image_updater.search_mode': r.mode, 'image_updater.candidates': r.candidates.length }),
    );
    searchModes.push(found.mode);
    const candidates = relevantCandidates(found.candidates, planTargets);
    const files = await step('read', () => {
      const read = new Map<string, string>();
      for (const p of new Set(candidates.map((c) => c.path))) read.set(p, readFileSync(safePath(wc.dir, root, p), 'latin1'));
      return read;
    });
    const plan = await step('plan', () => planEdits(files, candidates, planTargets), (p) => ({
      [ATTR.filesChanged]: p.files.size,
      'image_updater.targets_changing': p.targets.filter((t) => t.outcome === 'change').length,
    }));

    const results: TargetResult[] = [];
    const changing: TargetPlan[] = [];
    for (const p of plan.targets) {
      const t = byId.get(p.targetId)!;
      if (p.outcome === 'not_found') {
        results.push(fail(t, new SyncError('MARKER_NOT_FOUND', `no line in ${repo.name} (branch ${branch}) marks image ${t.image} with keyword "${t.keyword}": end the line that holds the image reference with "# ${t.keyword}"`)));
      } else if (p.outcome === 'already') {
        results.push({ kind: 'synced', target: t, commit: head, committed: false, fromTags: [] });
      } else {
        changing.push(p);
      }
    }
    if (changing.length === 0) return { kind: 'done', results };
    const changingTargets = changing.map((p) => byId.get(p.targetId)!);

    const edited = [...plan.files].map(([p, content]) => ({
      path: p,
      content,
      changes: changing.flatMap((c) => c.changes.filter((ch) => ch.path === p)),
    }));
    await step('write', () => {
      for (const file of edited) writeFileSync(safePath(wc.dir, root, file.path), file.content, 'latin1');
    });
    try {
      await step('validate', () => validateFiles(edited, { dir: wc.dir, command: repo.validate, timeoutMs: config.syncer.validateTimeout, signal: ctx.signal }));
    } catch (err) {
      if (err instanceof SyncError && err.code === 'VALIDATION_FAILED') return { kind: 'invalid', error: err, results, changing: changingTargets };
      throw err;
    }
    if (probe) return { kind: 'done', results: [] };
    if (options.dryRun) {
      // Shown by `sync --once --dry-run`; a dry run records nothing.
      for (const c of changing) results.push({ kind: 'synced', target: byId.get(c.targetId)!, commit: '(dry run)', committed: false, fromTags: c.fromTags });
      return { kind: 'done', results, diff: await wc.diff() };
    }

    const message = commitMessage(
      changing.map((c) => ({ image: byId.get(c.targetId)!.image, from: c.fromTags, to: byId.get(c.targetId)!.desiredTag, keyword: byId.get(c.targetId)!.keyword })),
      repo.commitMessage,
      { repository: repo.name, branch },
    );
    const sha = await step('git.commit', () => wc.commit(edited.map((f) => f.path), message), (c) => ({ [ATTR.commit]: c, [ATTR.filesChanged]: edited.length }));
    if (pr) {
      // Pull-request write-back: the commit goes to our branch, replacing what it held, and the pull request shows it.
      const head = pullRequestBranch(pr, branch);
      await step('git.push', () => wc.forcePush(head), () => ({ [ATTR.commit]: sha, [ATTR.outcome]: 'pushed', 'image_updater.head_branch': head }));
      const [owner, name] = (pr.github.repository ?? githubRepository(repo.url)!).split('/') as [string, string];
      const changes = changing.map((c) => ({ image: byId.get(c.targetId)!.image, from: c.fromTags, to: byId.get(c.targetId)!.desiredTag, keyword: byId.get(c.targetId)!.keyword }));
      const proposal = await step(
        'github.pull_request',
        () =>
          githubFor(pr).upsertPullRequest({
            owner,
            repo: name,
            base: branch,
            head,
            title: message.split('\n')[0]!,
            body: pullRequestBody(changes, branch),
            labels: pr.labels,
            reviewers: pr.reviewers,
            teamReviewers: pr.teamReviewers,
          }),
        (p) => ({ 'image_updater.pull_request': p.url, 'image_updater.pull_request_created': p.created }),
      );
      log.info({ repository: repo.name, branch, head, sha, pullRequest: proposal.url, images: changing.length }, proposal.created ? 'pull request opened' : 'pull request updated');
      for (const c of changing) results.push({ kind: 'proposed', target: byId.get(c.targetId)!, commit: sha, number: proposal.number, url: proposal.url });
      return { kind: 'done', results };
    }
    const pushed = await step('git.push', () => wc.push(), (p) => ({ [ATTR.commit]: sha, [ATTR.outcome]: p.ok ? 'pushed' : 'rejected' }));
    if (!pushed.ok) {
      log.info({ repository: repo.name, branch, mode, reason: pushed.reason }, 'push rejected: refetching');
      return { kind: 'rejected', reason: pushed.reason, results, changing: changingTargets };
    }
    log.info({ repository: repo.name, branch, mode, sha, images: changing.length }, 'pushed');
    for (const c of changing) {
      results.push({ kind: 'synced', target: byId.get(c.targetId)!, commit: sha, committed: true, fromTags: c.fromTags });
    }
    return { kind: 'done', results, commit: { sha, targetIds: changing.map((c) => c.targetId) } };
  }

  /** Attempts with bounded, jittered retries on rejected pushes. */
  async function land(set: DueTarget[], mode: 'batch' | 'single'): Promise<Attempt> {
    let last: Attempt | undefined;
    for (let n = 1; n <= config.syncer.pushAttempts; n++) {
      last = await attempt(set, mode, n);
      if (last.kind !== 'rejected') return last;
      if (n < config.syncer.pushAttempts) {
        metrics.pushRetries.labels(repo.name).inc();
        await new Promise((r) => setTimeout(r, backoffMs(n, { initialMs: 100, maxMs: 2000 }, random)));
      }
    }
    return last!;
  }

  function take(result: Attempt, mode: 'batch' | 'single'): void {
    record.results.push(...result.results);
    if (result.kind === 'done' && result.commit) record.commits.push({ ...result.commit, mode });
    if (result.kind === 'done' && result.diff !== undefined) record.diff = result.diff;
  }

  try {
    const batch = await land(mirror.ready, 'batch');
    take(batch, 'batch');
    if (batch.kind !== 'done') {
      if (options.dryRun || batch.changing.length === 1) {
        const error = batch.kind === 'invalid' ? batch.error : pushRejected(batch.reason);
        for (const t of batch.changing) record.results.push(fail(t, error));
      } else if (pr && batch.kind === 'invalid') {
        // One pull request holds every change: find the updates that break validation alone, fail
        // them, and propose the rest together.
        log.warn({ repository: repo.name, branch, reason: batch.error.message, images: batch.changing.length }, 'batch does not validate: checking each image alone');
        const valid: DueTarget[] = [];
        for (const t of batch.changing) {
          const alone = await attempt([t], 'single', 1, true);
          if (alone.kind === 'invalid') record.results.push(fail(t, alone.error));
          else valid.push(t);
        }
        if (valid.length > 0) {
          const rest = await land(valid, 'batch');
          take(rest, 'batch');
          if (rest.kind === 'invalid') for (const t of rest.changing) record.results.push(fail(t, rest.error));
        }
      } else {
        // The batch cannot land: one commit per image, so only the guilty one fails.
        log.warn({ repository: repo.name, branch, reason: batch.kind === 'invalid' ? batch.error.message : batch.reason, images: batch.changing.length }, 'batch cannot land: one commit per image');
        for (const t of batch.changing) {
          try {
            const single = await land([t], 'single');
            take(single, 'single');
            if (single.kind === 'invalid') record.results.push(fail(t, single.error));
            if (single.kind === 'rejected') record.results.push(fail(t, pushRejected(single.reason)));
          } catch (err) {
            record.results.push(fail(t, asSyncError(err)));
          }
        }
      }
    }
  } catch (err) {
    // Git server down, search failed, aborted: every target still open waits and retries.
    const error = asSyncError(err);
    log.warn({ repository: repo.name, branch, code: error.code, reason: error.message }, 'sync failed');
    const settled = new Set(record.results.map((r) => r.target.id));
    for (const t of mirror.ready) if (!settled.has(t.id)) record.results.push(fail(t, error));
  }
  return finish();

  function finish() {
    record.at = ctx.now();
    const count = (kind: string) => record.results.filter((r) => r.kind === kind).length;
    log.info(
      { repository: repo.name, branch, targets: targets.length, synced: count('synced'), failed: count('failed'), retry: count('retry'), awaitingMirror: count('waiting'), commits: record.commits.length, totalMs: record.at - started, stepMs, search: searchModes.join(',') },
      'sync finished',
    );
    return record;
  }
}

function asSyncError(err: unknown): SyncError {
  if (err instanceof SyncError) return err;
  // The message is stored and shown: strip anything that looks like a credential.
  return new SyncError('SYNC_FAILED', `unexpected sync failure: ${redactText((err as Error).message ?? String(err))}`, { cause: err });
}
