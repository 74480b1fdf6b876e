// A stand-in for the parts of GitHub's REST API that pull-request write-back uses
// (GitHub itself cannot be reached from here). It follows the documented request
// and response shapes (docs.github.com/rest/pulls/pulls, /rest/issues/labels,
// /rest/pulls/review-requests) and checks what GitHub would: the token, and that
// the head branch really exists on the (real, test) git server.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { git, pushCompetingCommit } from './git-server.ts';
import { tempDir } from './app.ts';

export interface StandinPull {
  number: number;
  state: 'open' | 'closed';
  merged: boolean;
  merge_commit_sha: string | null;
  title: string;
  body: string;
  head: { ref: string; sha: string };
  base: { ref: string };
  labels: string[];
  requested_reviewers: string[];
  requested_teams: string[];
}

interface Injected {
  match: RegExp;
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * Starts the stand-in for `owner/repo`; its git side is the bare repository set with
 * `useRepository` (the test's configuration needs the stand-in's URL before that exists).
 */
export async function startGitHubStandin(options: { owner: string; repo: string; token: string }) {
  let bare = '';
  const pulls: StandinPull[] = [];
  const requests: string[] = [];
  const injected: Injected[] = [];
  const prefix = `/repos/${options.owner}/${options.repo}`;

  const branchSha = (ref: string): string | undefined => {
    try {
      return git(bare, 'rev-parse', '--verify', '--quiet', `refs/heads/${ref}`).trim() || undefined;
    } catch {
      return undefined;
    }
  };

  let apiBase = '';
  const present = (p: StandinPull) => ({
    url: `${apiBase}${prefix}/pulls/${p.number}`,
    id: 1000 + p.number,
    node_id: `PR_${p.number}`,
    html_url: `https://github.example/${options.owner}/${options.repo}/pull/${p.number}`,
    number: p.number,
    state: p.state,
    locked: false,
    title: p.title,
    body: p.body,
    user: { login: 'image-updater[bot]', type: 'Bot' },
    labels: p.labels.map((name, i) => ({ id: i + 1, name })),
    requested_reviewers: p.requested_reviewers.map((login) => ({ login })),
    requested_teams: p.requested_teams.map((slug) => ({ slug })),
    head: { label: `${options.owner}:${p.head.ref}`, ref: p.head.ref, sha: p.head.sha },
    base: { label: `${options.owner}:${p.base.ref}`, ref: p.base.ref },
    merged: p.merged,
    merged_at: p.merged ? new Date().toISOString() : null,
    merge_commit_sha: p.merge_commit_sha,
  });

  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const line = `${req.method} ${url.pathname}${url.search}`;
      requests.push(line);
      const send = (status: number, body: unknown, headers: Record<string, string> = {}) =>
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-github-api-version-selected': '2022-11-28', ...headers }).end(body === undefined ? '' : JSON.stringify(body));
      const auth = req.headers.authorization ?? '';
      if (auth !== `token ${options.token}` && auth !== `Bearer ${options.token}`) {
        return send(401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
      }
      const inject = injected.findIndex((i) => i.match.test(line));
      if (inject >= 0) {
        const [i] = injected.splice(inject, 1);
        return send(i!.status, i!.body, i!.headers);
      }
      let body: Record<string, unknown> = {};
      try {
        body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      } catch {
        return send(400, { message: 'Problems parsing JSON' });
      }
      if (!url.pathname.startsWith(`${prefix}/`)) return send(404, { message: 'Not Found' });
      const path = url.pathname.slice(prefix.length);
      let m: RegExpExecArray | null;

      if (req.method === 'GET' && path === '/pulls') {
        const head = url.searchParams.get('head');
        const state = url.searchParams.get('state') ?? 'open';
        const found = pulls.filter(
          (p) =>
            (state === 'all' || p.state === state) &&
            (!head || `${options.owner}:${p.head.ref}` === head) &&
            (!url.searchParams.get('base') || p.base.ref === url.searchParams.get('base')),
        );
        return send(200, found.map(present));
      }
      if (req.method === 'POST' && path === '/pulls') {
        const head = String(body.head ?? '');
        const sha = branchSha(head);
        if (!sha || !branchSha(String(body.base ?? ''))) {
          return send(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', field: sha ? 'base' : 'head', code: 'invalid' }] });
        }
        if (pulls.some((p) => p.state === 'open' && p.head.ref === head)) {
          return send(422, { message: 'Validation Failed', errors: [{ resource: 'PullRequest', code: 'custom', message: `A pull request already exists for ${options.owner}:${head}.` }] });
        }
        const pull: StandinPull = {
          number: pulls.length + 1,
          state: 'open',
          merged: false,
          merge_commit_sha: null,
          title: String(body.title),
          body: String(body.body ?? ''),
          head: { ref: head, sha },
          base: { ref: String(body.base) },
          labels: [],
          requested_reviewers: [],
          requested_teams: [],
        };
        pulls.push(pull);
        return send(201, present(pull));
      }
      if ((m = /^\/pulls\/(\d+)$/.exec(path))) {
        const pull = pulls[Number(m[1]) - 1];
        if (!pull) return send(404, { message: 'Not Found' });
        if (req.method === 'GET') {
          // GitHub reports the head as the branch holds it now.
          if (pull.state === 'open') pull.head.sha = branchSha(pull.head.ref) ?? pull.head.sha;
          return send(200, present(pull));
        }
        if (req.method === 'PATCH') {
          if (typeof body.title === 'string') pull.title = body.title;
          if (typeof body.body === 'string') pull.body = body.body;
          pull.head.sha = branchSha(pull.head.ref) ?? pull.head.sha;
          return send(200, present(pull));
        }
      }
      if ((m = /^\/issues\/(\d+)\/labels$/.exec(path)) && req.method === 'POST') {
        const pull = pulls[Number(m[1]) - 1];
        if (!pull) return send(404, { message: 'Not Found' });
        for (const label of (body.labels as string[]) ?? []) if (!pull.labels.includes(label)) pull.labels.push(label);
        return send(200, pull.labels.map((name, i) => ({ id: i + 1, name })));
      }
      if ((m = /^\/pulls\/(\d+)\/requested_reviewers$/.exec(path)) && req.method === 'POST') {
        const pull = pulls[Number(m[1]) - 1];
        if (!pull) return send(404, { message: 'Not Found' });
        pull.requested_reviewers.push(...((body.reviewers as string[]) ?? []));
        pull.requested_teams.push(...((body.team_reviewers as string[]) ?? []));
        return send(201, present(pull));
      }
      return send(404, { message: 'Not Found', documentation_url: 'https://docs.github.com/rest' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  apiBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    apiUrl: apiBase,
    useRepository(path: string) {
      bare = path;
    },
    pulls,
    requests,
    /** The next request matching `match` gets this answer instead. */
    failNext(match: RegExp, status: number, headers: Record<string, string>, body: unknown) {
      injected.push({ match, status, headers, body });
    },
    /** Merges a pull request for real: a merge commit of its head into its base, pushed to the git server. */
    merge(number: number) {
      const pull = pulls[number - 1]!;
      const clone = tempDir('iu-merge-');
      git(clone, 'clone', '-q', bare, '.');
      git(clone, '-c', 'user.name=Reviewer', '-c', 'user.email=reviewer@example.com', 'merge', '-q', '--no-ff', '-m', `Merge pull request #${number}`, `origin/${pull.head.ref}`);
      git(clone, 'push', '-q', 'origin', `HEAD:${pull.base.ref}`);
      pull.state = 'closed';
      pull.merged = true;
      pull.merge_commit_sha = git(clone, 'rev-parse', 'HEAD').trim();
    },
    close(number: number) {
      pulls[number - 1]!.state = 'closed';
    },
    /** Someone else changes the base branch meanwhile. */
    pushToBase(file: string, content: string) {
      pushCompetingCommit(bare, file, content);
    },
    stop: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
