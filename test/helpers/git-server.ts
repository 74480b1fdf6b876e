// A real git server for tests: `git http-backend` (smart HTTP) behind a small
// Node HTTP server with Basic auth, serving bare repositories from a folder.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir } from './app.ts';

export const GIT_USER = 'bot';
export const GIT_PASSWORD = 'git-s3cret-password';

export interface GitServer {
  root: string;
  port: number;
  url(repo: string): string;
  /** Runs once before the next push reaches the backend (to race it); the push waits for it. */
  beforeNextPush(hook: () => void | Promise<void>): void;
  /** Runs once when the next push has updated the repository, before the client hears of it. */
  afterNextPush(hook: () => void): void;
  /** Stops listening (the port stays reserved for start()). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
  /** Every request path, e.g. to count pushes. */
  requests: string[];
}

/** Runs git with a clean environment (no host config), failing loudly. */
export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 't@example.com' },
  });
}

/** Creates a bare repository `name` under the server root from a tree of files (path → content). */
export function createRepository(server: { root: string }, name: string, files: Record<string, string | Buffer>, branch = 'main'): string {
  const seed = tempDir('iu-seed-');
  git(seed, 'init', '-q', '-b', branch);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(seed, p)), { recursive: true });
    writeFileSync(path.join(seed, p), content);
  }
  git(seed, 'add', '-A');
  git(seed, 'commit', '-q', '-m', 'initial');
  const bare = path.join(server.root, `${name}.git`);
  git(server.root, 'clone', '-q', '--bare', seed, bare);
  git(bare, 'config', 'http.receivepack', 'true');
  return bare;
}

/** Pushes a commit to a bare repository directly (as another user would), changing one file. */
export function pushCompetingCommit(bare: string, file: string, content: string, branch = 'main'): void {
  const clone = tempDir('iu-other-');
  git(clone, 'clone', '-q', '-b', branch, bare, '.');
  mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
  writeFileSync(path.join(clone, file), content);
  git(clone, 'add', '-A');
  git(clone, 'commit', '-q', '-m', `competing change to ${file}`);
  git(clone, 'push', '-q', 'origin', `HEAD:${branch}`);
}

/** Starts the server on a free loopback port. */
export async function startGitServer(): Promise<GitServer> {
  const root = tempDir('iu-git-');
  let hook: (() => void | Promise<void>) | undefined;
  let after: (() => void) | undefined;
  const requests: string[] = [];
  const expected = `Basic ${Buffer.from(`${GIT_USER}:${GIT_PASSWORD}`).toString('base64')}`;

  const handler: http.RequestListener = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
      return;
    }
    if (hook && url.pathname.endsWith('/git-receive-pack')) {
      const run = hook;
      hook = undefined;
      // The request body waits, unread, in the socket until the hook is done.
      await run();
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: root,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method,
      PATH_INFO: url.pathname,
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: GIT_USER,
      REMOTE_ADDR: '127.0.0.1',
    };
    if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
    if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    if (req.headers['git-protocol']) env.GIT_PROTOCOL = String(req.headers['git-protocol']);
    const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const afterThis = url.pathname.endsWith('/git-receive-pack') ? after : undefined;
    if (afterThis) after = undefined;
    req.pipe(cgi.stdin);
    res.on('close', () => cgi.kill());
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => {
      // The ref is updated once the backend is done: run the hook before the client is answered.
      afterThis?.();
      res.end();
    });
  };

  let server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    root,
    port,
    requests,
    url: (repo) => `http://127.0.0.1:${port}/${repo}.git`,
    beforeNextPush(h) {
      hook = h;
    },
    afterNextPush(h) {
      after = h;
    },
    stop,
    async start() {
      server = http.createServer(handler);
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
    close: stop,
  };
}
