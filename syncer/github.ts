// The GitHub adapter for pull-request write-back (@octokit/rest): one pull
// request per repository and branch, opened or updated with the full set of
// pending changes, and looked at to notice a merge or a close. GitHub's errors
// become SyncErrors a user can act on; the token never appears in one.
import { Octokit } from '@octokit/rest';
import { SyncError } from '../shared/errors.ts';

export interface PullRequestSpec {
  owner: string;
  repo: string;
  base: string;
  head: string;
  title: string;
  body: string;
  labels: string[];
  reviewers: string[];
  teamReviewers: string[];
}

export interface PullRequest {
  number: number;
  url: string;
  created: boolean;
}

export type PullRequestState = { state: 'open' } | { state: 'merged'; mergeCommit: string | null } | { state: 'closed' };

interface GitHubRequestError {
  status: number;
  message: string;
  response?: { headers?: Record<string, string | undefined>; data?: { message?: string; errors?: Array<{ message?: string }> } };
}

/** A GitHub API failure as a SyncError: auth, rate limit (with the wait GitHub asks for), or the API's own message. */
export function githubError(err: unknown, what: string): SyncError {
  const e = err as GitHubRequestError;
  if (typeof e?.status !== 'number') {
    return new SyncError('GITHUB_FAILED', `GitHub did not answer ${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  const headers = e.response?.headers ?? {};
  const detail = [e.response?.data?.message, ...(e.response?.data?.errors ?? []).map((x) => x.message)].filter(Boolean).join('; ') || e.message;
  const retryAfter = Number(headers['retry-after']);
  const resetAt = Number(headers['x-ratelimit-reset']);
  const limited = e.status === 429 || (e.status === 403 && (Number.isFinite(retryAfter) || headers['x-ratelimit-remaining'] === '0' || /rate limit/i.test(detail)));
  if (limited) {
    const waitMs = Number.isFinite(retryAfter) ? retryAfter * 1000 : Number.isFinite(resetAt) ? Math.max(0, resetAt * 1000 - Date.now()) : 60_000;
    return new SyncError('GITHUB_RATE_LIMITED', `GitHub's rate limit stopped ${what} (${e.status}: ${detail}); trying again in ${Math.ceil(waitMs / 1000)} s`, { cause: err, retryAfterMs: waitMs });
  }
  if (e.status === 401) {
    return new SyncError('GITHUB_AUTH_FAILED', `GitHub refused the token for ${what} (401: ${detail}); check pullRequest.github.token`, { cause: err });
  }
  if (e.status === 403 || e.status === 404) {
    return new SyncError('GITHUB_FAILED', `GitHub answered ${e.status} to ${what} (${detail}): check pullRequest.github.repository and that the token may open pull requests there`, { cause: err });
  }
  return new SyncError('GITHUB_FAILED', `GitHub answered ${e.status} to ${what}: ${detail}`, { cause: err });
}

export function createGitHub(options: { apiUrl: string; token: string }) {
  const octokit = new Octokit({
    auth: options.token,
    baseUrl: options.apiUrl.replace(/\/+$/, ''),
    userAgent: 'image-updater',
    // Octokit's own console logging would bypass our logger; its errors are handled here.
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    request: { timeout: 30_000 },
  });

  async function call<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw githubError(err, what);
    }
  }

  return {
    /** Opens the pull request from `head` into `base`, or updates the open one; labels and reviewers as configured. */
    async upsertPullRequest(spec: PullRequestSpec): Promise<PullRequest> {
      const repo = { owner: spec.owner, repo: spec.repo };
      const open = await call(`listing the pull requests of ${spec.owner}/${spec.repo}`, () =>
        octokit.rest.pulls.list({ ...repo, head: `${spec.owner}:${spec.head}`, base: spec.base, state: 'open', per_page: 1 }),
      );
      const existing = open.data[0];
      let number: number;
      let url: string;
      if (existing) {
        const updated = await call(`updating pull request #${existing.number}`, () =>
          octokit.rest.pulls.update({ ...repo, pull_number: existing.number, title: spec.title, body: spec.body }),
        );
        ({ number, html_url: url } = updated.data);
      } else {
        const created = await call(`opening a pull request from ${spec.head} into ${spec.base}`, () =>
          octokit.rest.pulls.create({ ...repo, head: spec.head, base: spec.base, title: spec.title, body: spec.body, maintainer_can_modify: false }),
        );
        ({ number, html_url: url } = created.data);
        if (spec.reviewers.length > 0 || spec.teamReviewers.length > 0) {
          await call(`requesting reviewers on #${number}`, () =>
            octokit.rest.pulls.requestReviewers({ ...repo, pull_number: number, reviewers: spec.reviewers, team_reviewers: spec.teamReviewers }),
          );
        }
      }
      if (spec.labels.length > 0) {
        await call(`labelling #${number}`, () => octokit.rest.issues.addLabels({ ...repo, issue_number: number, labels: spec.labels }));
      }
      return { number, url, created: !existing };
    },

    /** Whether a pull request is open, merged (with its merge commit) or closed unmerged. */
    async pullRequestState(owner: string, repo: string, number: number): Promise<PullRequestState> {
      const { data } = await call(`reading pull request #${number}`, () => octokit.rest.pulls.get({ owner, repo, pull_number: number }));
      if (data.merged) return { state: 'merged', mergeCommit: data.merge_commit_sha ?? null };
      return data.state === 'closed' ? { state: 'closed' } : { state: 'open' };
    },
  };
}

export type GitHub = ReturnType<typeof createGitHub>;
