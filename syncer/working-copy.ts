// The git adapter: one working copy per repository and branch, cloned once,
// then fetched and reset for every sync. git runs through execFile with an
// argument array (never a shell). Credentials reach git only through the
// environment, never the URL or .git/config; HOME is ours, so the host's git
// configuration does not apply.
//
// Not simple-git (DESIGN §8): measured on a 5,000-file working copy, its
// `reset --hard` took 76 ms against 23 ms for the same command via execFile,
// and its environment guard must be told about every GIT_* variable we set.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { SyncError } from '../shared/errors.ts';
import { redactText, redactUrl } from '../shared/log.ts';
import { parseNameStatus, type FileChange } from './marker-index.ts';

const exec = promisify(execFile);

export interface GitAuth {
  username?: string | undefined;
  password?: string | undefined;
  sshKeyFile?: string | undefined;
  /** Pinned ssh host keys; without it the first key seen is trusted and remembered (accept-new). */
  knownHostsFile?: string | undefined;
}

export interface WorkingCopyOptions {
  url: string;
  branch: string;
  /** Where the working copy lives; created on the first sync. */
  dir: string;
  /** A folder of ours to use as HOME for git. */
  homeDir: string;
  author: { name: string; email: string };
  auth?: GitAuth | undefined;
  /** Sign every commit with this ssh private key (git's `gpg.format=ssh`). */
  signingKeyFile?: string | undefined;
  /** Inactivity timeout for one git command. */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export type PushResult = { ok: true } | { ok: false; reason: string };

const REJECTED = /^!\t\S+\t\[(?:remote )?rejected\] \((.+)\)$/m;

function gitEnvironment(options: WorkingCopyOptions): Record<string, string> {
  const config: Array<[string, string]> = [
    // A stalled server fails instead of hanging: under 1 KB/s for 30 s aborts.
    ['http.lowSpeedLimit', '1000'],
    ['http.lowSpeedTime', '30'],
  ];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: options.homeDir,
    LANG: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
  };
  if (process.env.GIT_SSL_CAINFO) env.GIT_SSL_CAINFO = process.env.GIT_SSL_CAINFO;
  const { auth } = options;
  if (auth?.password !== undefined && /^https?:\/\//.test(options.url)) {
    const origin = new URL(options.url).origin;
    const basic = Buffer.from(`${auth.username ?? 'git'}:${auth.password}`).toString('base64');
    // Scoped to the repository's origin: a redirect elsewhere does not receive it.
    config.push([`http.${origin}/.extraHeader`, `Authorization: Basic ${basic}`]);
  }
  if (auth?.sshKeyFile || auth?.knownHostsFile) {
    // git runs this through sh: every path is single-quoted.
    const quote = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;
    const parts = ['ssh', '-o', 'BatchMode=yes'];
    if (auth.sshKeyFile) parts.push('-i', quote(auth.sshKeyFile), '-o', 'IdentitiesOnly=yes');
    parts.push(...(auth.knownHostsFile ? ['-o', `UserKnownHostsFile=${quote(auth.knownHostsFile)}`, '-o', 'StrictHostKeyChecking=yes'] : ['-o', 'StrictHostKeyChecking=accept-new']));
    env.GIT_SSH_COMMAND = parts.join(' ');
  } else {
    env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new';
  }
  if (options.signingKeyFile) {
    // Given to git as command-line configuration: it overrides the working copy's commit.gpgsign=false.
    config.push(['gpg.format', 'ssh'], ['user.signingkey', options.signingKeyFile], ['commit.gpgsign', 'true']);
  }
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([key, value], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  return env;
}

/** Translates a git failure into a SyncError a user can act on, with no secret in it. */
export function gitError(err: unknown, url: string, branch: string): SyncError {
  const text = redactText(err instanceof Error ? err.message : String(err));
  const where = redactUrl(url);
  if (/Host key verification failed/i.test(text)) {
    return new SyncError('GIT_AUTH_FAILED', `the ssh host key of ${where} does not match the known host key (auth.knownHostsFile, or the key first seen); check the server before trusting a new key`, { cause: err });
  }
  if (/Authentication failed|could not read Username|could not read Password|terminal prompts disabled|returned error: 40[13]|Permission denied \(publickey/i.test(text)) {
    return new SyncError('GIT_AUTH_FAILED', `the git server refused the credentials for ${where}; check this repository's auth settings`, { cause: err });
  }
  if (/Remote branch .* not found|couldn't find remote ref/i.test(text)) {
    return new SyncError('GIT_FAILED', `branch "${branch}" does not exist in ${where}`, { cause: err });
  }
  if (/Could not resolve host|Connection refused|Failed to connect|unable to access|timed out|Connection reset|early EOF|The remote end hung up|returned error: 5\d\d|aborted/i.test(text)) {
    const line = text.split('\n').find((l) => /fatal|error/i.test(l)) ?? text.split('\n')[0];
    return new SyncError('GIT_UNAVAILABLE', `cannot reach ${where}: ${line?.trim()}`, { cause: err });
  }
  const last = text.trim().split('\n').filter(Boolean).slice(-2).join(' ');
  return new SyncError('GIT_FAILED', `git failed on ${where}: ${last}`, { cause: err });
}

/** Opens (without touching the disk yet) the working copy of one repository and branch. */
export function workingCopy(options: WorkingCopyOptions) {
  const env = gitEnvironment(options);
  mkdirSync(options.homeDir, { recursive: true });

  /** Runs git in `cwd`; a failure carries git's stderr and stdout in its message. */
  async function git(cwd: string, args: string[], timeoutMs = options.timeoutMs): Promise<string> {
    try {
      const { stdout } = await exec('git', args, { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, signal: options.signal });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; killed?: boolean; code?: unknown; message: string };
      const reason = e.killed ? `git ${args[0]} timed out after ${timeoutMs} ms` : e.code === 'ABORT_ERR' ? `git ${args[0]} aborted` : `${e.stderr ?? ''}\n${e.stdout ?? ''}`.trim() || e.message;
      throw new Error(reason, { cause: err });
    }
  }

  async function run<T>(what: () => Promise<T>): Promise<T> {
    try {
      return await what();
    } catch (err) {
      throw err instanceof SyncError ? err : gitError(err, options.url, options.branch);
    }
  }

  const { dir, branch } = options;
  const remoteRef = `refs/remotes/origin/${branch}`;

  /** A ref's SHA read from .git (loose file, then packed-refs): a file read instead of a git process. */
  function readRef(ref: string): string | undefined {
    try {
      const loose = readFileSync(path.join(dir, '.git', ref), 'utf8').trim();
      if (/^[0-9a-f]{40}$/.test(loose)) return loose;
    } catch {
      // not a loose ref: look in packed-refs
    }
    try {
      const line = readFileSync(path.join(dir, '.git', 'packed-refs'), 'utf8').split('\n').find((l) => l.endsWith(` ${ref}`));
      return line?.slice(0, 40);
    } catch {
      return undefined;
    }
  }

  return {
    dir,

    /**
     * Clones on first use, then fetches and resets to the remote branch; returns HEAD's SHA.
     * `clean` also removes untracked files: a walk of the whole tree, needed only when something
     * other than a sync may have left files behind (the syncer itself never creates any).
     */
    async prepare({ clean = true }: { clean?: boolean } = {}): Promise<string> {
      return run(async () => {
        if (!existsSync(path.join(dir, '.git'))) {
          // Clone beside the final place and rename, so an interrupted clone leaves nothing half-made.
          const partial = `${dir}.partial`;
          rmSync(partial, { recursive: true, force: true });
          mkdirSync(path.dirname(dir), { recursive: true });
          // A first clone may take far longer than one command should: allow ten times the timeout.
          await git(path.dirname(dir), ['clone', '--quiet', '--branch', branch, '--single-branch', '--no-tags', '--', options.url, partial], options.timeoutMs * 10);
          await git(partial, ['config', 'user.name', options.author.name]);
          await git(partial, ['config', 'user.email', options.author.email]);
          await git(partial, ['config', 'commit.gpgsign', 'false']);
          renameSync(partial, dir);
        } else {
          await git(dir, ['fetch', '--quiet', '--no-tags', '--prune', 'origin', `+refs/heads/${branch}:${remoteRef}`]);
        }
        await git(dir, ['reset', '--quiet', '--hard', remoteRef]);
        if (clean) await git(dir, ['clean', '-ffdxq']);
        return readRef(remoteRef) ?? (await git(dir, ['rev-parse', remoteRef])).trim();
      });
    },

    /** Commits the given files (paths relative to the working copy) in one git call; returns the new SHA. */
    async commit(files: readonly string[], message: string): Promise<string> {
      return run(async () => {
        await git(dir, ['commit', '--quiet', '--no-verify', '-m', message, '--', ...files]);
        return readRef(`refs/heads/${branch}`) ?? (await git(dir, ['rev-parse', 'HEAD'])).trim();
      });
    },

    /** Pushes HEAD to the branch; a rejection (stale, non-fast-forward, lock) is a result, not an error. */
    async push(): Promise<PushResult> {
      try {
        await git(dir, ['push', '--porcelain', 'origin', `HEAD:refs/heads/${branch}`]);
        return { ok: true };
      } catch (err) {
        const rejected = REJECTED.exec(err instanceof Error ? err.message : String(err));
        if (rejected) return { ok: false, reason: rejected[1]! };
        throw gitError(err, options.url, branch);
      }
    },

    /** Force-pushes HEAD to another branch of ours (the pull request's), replacing whatever it held. */
    async forcePush(ref: string): Promise<void> {
      return run(async () => {
        await git(dir, ['push', '--porcelain', '--force', 'origin', `HEAD:refs/heads/${ref}`]);
      });
    },

    /** Files changed between two commits (`git diff --name-status --no-renames`), or undefined when git cannot tell. */
    async changes(from: string, to: string): Promise<FileChange[] | undefined> {
      try {
        return parseNameStatus(await git(dir, ['diff', '--name-status', '--no-renames', '-z', from, to]));
      } catch {
        return undefined;
      }
    },

    /** The unified diff of the working tree against HEAD (for --dry-run). */
    async diff(): Promise<string> {
      return run(() => git(dir, ['diff', '--no-color', 'HEAD']));
    },
  };
}

export type WorkingCopy = ReturnType<typeof workingCopy>;
