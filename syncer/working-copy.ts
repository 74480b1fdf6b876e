// The git adapter (simple-git 4 over the git CLI): one working copy per
// repository and branch, cloned once, then fetched and reset for every sync.
// Credentials reach git only through the environment, never the URL or
// .git/config; HOME is ours, so the host's git configuration does not apply.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { SyncError } from '../shared/errors.ts';
import { redactText, redactUrl } from '../shared/log.ts';

export interface GitAuth {
  username?: string | undefined;
  password?: string | undefined;
  sshKeyFile?: string | undefined;
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
  if (auth?.sshKeyFile) {
    env.GIT_SSH_COMMAND = `ssh -i '${auth.sshKeyFile.replace(/'/g, `'\\''`)}' -o IdentitiesOnly=yes -o BatchMode=yes`;
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
  if (/Authentication failed|could not read Username|could not read Password|terminal prompts disabled|returned error: 40[13]|Permission denied \(publickey/i.test(text)) {
    return new SyncError('GIT_AUTH_FAILED', `the git server refused the credentials for ${where}; check this repository's auth settings`, { cause: err });
  }
  if (/Remote branch .* not found|couldn't find remote ref/i.test(text)) {
    return new SyncError('GIT_FAILED', `branch "${branch}" does not exist in ${where}`, { cause: err });
  }
  if (/Could not resolve host|Connection refused|Failed to connect|unable to access|timed out|Connection reset|early EOF|The remote end hung up|block timeout|returned error: 5\d\d|aborted/i.test(text)) {
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

  function git(baseDir: string): SimpleGit {
    return simpleGit({
      baseDir,
      timeout: { block: options.timeoutMs },
      unsafe: { allowUnsafeConfigEnvCount: true, allowUnsafeSshCommand: true },
      allowEnvironment: Object.keys(env).filter((k) => k.startsWith('GIT_')),
      ...(options.signal ? { abort: options.signal } : {}),
    } as Parameters<typeof simpleGit>[0]).env(env);
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

  return {
    dir,

    /** Clones on first use, then fetches and resets to the remote branch; returns HEAD's SHA. */
    async prepare(): Promise<string> {
      return run(async () => {
        if (!existsSync(path.join(dir, '.git'))) {
          // Clone beside the final place and rename, so an interrupted clone leaves nothing half-made.
          const partial = `${dir}.partial`;
          rmSync(partial, { recursive: true, force: true });
          mkdirSync(path.dirname(dir), { recursive: true });
          await git(path.dirname(dir)).clone(options.url, partial, ['--branch', branch, '--single-branch', '--no-tags']);
          const fresh = git(partial);
          await fresh.addConfig('user.name', options.author.name);
          await fresh.addConfig('user.email', options.author.email);
          await fresh.addConfig('commit.gpgsign', 'false');
          renameSync(partial, dir);
        } else {
          await git(dir).raw(['fetch', '--no-tags', '--prune', 'origin', `+refs/heads/${branch}:${remoteRef}`]);
        }
        const repo = git(dir);
        await repo.raw(['reset', '--hard', remoteRef]);
        await repo.raw(['clean', '-ffdx']);
        return (await repo.revparse(['HEAD'])).trim();
      });
    },

    /** Commits the given files (paths relative to the working copy); returns the new SHA. */
    async commit(files: readonly string[], message: string): Promise<string> {
      return run(async () => {
        const repo = git(dir);
        await repo.raw(['add', '--', ...files]);
        await repo.raw(['commit', '--no-verify', '-m', message]);
        return (await repo.revparse(['HEAD'])).trim();
      });
    },

    /** Pushes HEAD to the branch; a rejection (stale, non-fast-forward, lock) is a result, not an error. */
    async push(): Promise<PushResult> {
      try {
        await git(dir).raw(['push', '--porcelain', 'origin', `HEAD:refs/heads/${branch}`]);
        return { ok: true };
      } catch (err) {
        const rejected = REJECTED.exec(err instanceof Error ? err.message : String(err));
        if (rejected) return { ok: false, reason: rejected[1]! };
        throw gitError(err, options.url, branch);
      }
    },

    /** The unified diff of the working tree against HEAD (for --dry-run). */
    async diff(): Promise<string> {
      return run(() => git(dir).raw(['diff', '--no-color', 'HEAD']));
    },
  };
}

export type WorkingCopy = ReturnType<typeof workingCopy>;
