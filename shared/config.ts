// The configuration schema, its defaults and the checks across fields.
// Reading the file and reporting problems with line numbers is config-file.ts.
import { z } from 'zod';
import { branchProblem } from './git-ref.ts';
import { globsToRegex } from './glob.ts';
import { parseImageName } from './image-ref.ts';
import type { Problem } from './problems.ts';

const DURATION = /^(\d+)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Milliseconds for `500ms`, `10s`, `5m`, `1h` or a whole number of milliseconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = DURATION.exec(value);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : undefined;
}

const duration = z.unknown().transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: 'must be a duration such as "500ms", "10s" or "5m", or whole milliseconds' });
    return z.NEVER;
  }
  return ms;
});

const branch = z.string().superRefine((value, ctx) => {
  const problem = branchProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: `is not a valid branch name: ${problem}` });
});

const globs = z.array(z.string().min(1, 'must not be empty')).min(1, 'must list at least one pattern');

export const DEFAULT_INCLUDE = ['*.yaml', '*.yml', '*.jsonnet', '*.libsonnet'];

export const TEMPLATE_VARIABLES = ['summary', 'count', 'keywords', 'repository', 'branch', 'images', 'changes'] as const;
export const DEFAULT_SUBJECT = 'Update {{summary}} ({{keywords}})';
export const DEFAULT_BODY = '{{changes}}';

function templateCheck(value: string, ctx: z.RefinementCtx): void {
  for (const m of value.matchAll(/\{\{\s*([^}]*?)\s*\}\}/g)) {
    if (!(TEMPLATE_VARIABLES as readonly string[]).includes(m[1]!)) {
      ctx.addIssue({ code: 'custom', message: `has an unknown variable {{${m[1]}}}; known: ${TEMPLATE_VARIABLES.map((v) => `{{${v}}}`).join(', ')}` });
    }
  }
}

const repositorySchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1 to 63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit'),
  url: z.string().min(1, 'must not be empty'),
  branch: branch.default('main'),
  branches: globs.optional(),
  /** ripgrep globs of the files searched for markers (a leading "!" excludes). */
  include: globs.default(DEFAULT_INCLUDE),
  /** A command run in the working copy after the edit, e.g. ["kustomize", "build", "clusters/prod"]. */
  validate: z.array(z.string().min(1)).min(1, 'must name a command').optional(),
  /** Sign commits with an ssh key: a file (a mounted secret) or the private key itself (from `${ENV}`). */
  signing: z
    .strictObject({
      sshKeyFile: z.string().min(1, 'must not be empty').optional(),
      sshKey: z
        .string()
        .refine((k) => /-----BEGIN OPENSSH PRIVATE KEY-----/.test(k), 'must be an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----), usually from ${ENV}')
        .optional(),
    })
    .optional(),
  /** The commit message: `{{variables}}` as listed in the README. */
  commitMessage: z
    .strictObject({
      subject: z.string().min(1, 'must not be empty').superRefine(templateCheck).default(DEFAULT_SUBJECT),
      body: z.string().superRefine(templateCheck).default(DEFAULT_BODY),
    })
    .prefault({}),
  /** How changes reach the branch: a pushed commit, or a pull request a person merges. */
  writeBack: z.enum(['commit', 'pull-request']).default('commit'),
  pullRequest: z
    .strictObject({
      /** The branch of ours the changes are force-pushed to; `{{branch}}` is the target branch. */
      branch: z
        .string()
        .default('image-updater/{{branch}}')
        .superRefine((value, ctx) => {
          const problem = branchProblem(value.replaceAll('{{branch}}', 'main'));
          if (problem) ctx.addIssue({ code: 'custom', message: `is not a valid branch name: ${problem}` });
        }),
      github: z.strictObject({
        /** https://api.github.com, or GitHub Enterprise's https://HOST/api/v3. */
        apiUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).default('https://api.github.com'),
        token: z.string().min(1, 'must not be empty'),
        /** owner/name on GitHub; by default read from the repository URL. */
        repository: z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'must be owner/name').optional(),
      }),
      labels: z.array(z.string().min(1)).default([]),
      reviewers: z.array(z.string().min(1)).default([]),
      teamReviewers: z.array(z.string().min(1)).default([]),
      /** How often an open pull request is looked at, to notice a merge or a close. */
      pollInterval: duration.default(30_000),
    })
    .optional(),
  /** Write `image:tag@digest` with the digest the mirror confirmed (needs mirror.mode verify or copy). */
  pinDigest: z.boolean().default(false),
  auth: z
    .strictObject({
      username: z.string().min(1).optional(),
      password: z.string().min(1, 'must not be empty').optional(),
      sshKeyFile: z.string().min(1).optional(),
      knownHostsFile: z.string().min(1).optional(),
    })
    .optional(),
});

/** Why `host[:port]` is not a registry host as image references write it, or undefined. */
export function registryHostProblem(host: string): string | undefined {
  if (host.includes('/')) return 'must be a host with an optional port, without a path';
  const parsed = parseImageName(`${host}/x`);
  if (!parsed.ok) return parsed.reason;
  if (parsed.value.domain !== host) return 'must be a registry host such as "gcr.io" or "127.0.0.1:5000" (a dot, a port or "localhost")';
  return undefined;
}

/** Why `host[:port][/prefix]` is not where mirrored images can live, or undefined. */
export function mirrorRegistryProblem(value: string): string | undefined {
  const slash = value.indexOf('/');
  const hostProblem = registryHostProblem(slash === -1 ? value : value.slice(0, slash));
  if (hostProblem) return hostProblem;
  if (slash !== -1) {
    const prefix = parseImageName(`x.io/${value.slice(slash + 1)}`);
    if (!prefix.ok) return `prefix ${prefix.reason}`;
  }
  return undefined;
}

const int = (min: number, max: number) =>
  z.number().int('must be a whole number').min(min, `must be from ${min} to ${max}`).max(max, `must be from ${min} to ${max}`);

const registrySchema = z.strictObject({
  /** As image references write it: `gcr.io`, `docker.io`, `127.0.0.1:5000`. */
  host: z.string().superRefine((value, ctx) => {
    const problem = registryHostProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  /** Plain HTTP: only for a registry on loopback or a trusted private network. */
  insecure: z.boolean().default(false),
  username: z.string().min(1, 'must not be empty').optional(),
  password: z.string().min(1, 'must not be empty').optional(),
  maxConcurrency: int(1, 64).default(8),
  maxRequestsPerSecond: int(1, 10_000).default(200),
});

const mirrorSchema = z
  .strictObject({
    /** `host[:port][/prefix]`: the image `gcr.io/acme/app` is mirrored as `<registry>/gcr.io/acme/app`. */
    registry: z
      .string()
      .superRefine((value, ctx) => {
        const problem = mirrorRegistryProblem(value);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    mode: z.enum(['off', 'verify', 'copy']).default('off'),
    /** How long a target may wait for its image to appear (verify) or in the source (copy). */
    timeout: duration.default(30 * 60_000),
    /** Mirrored tags kept per image beyond those a target wants or runs; 0 keeps every tag. */
    keep: int(0, 100_000).default(0),
    /** A registry request that sends or receives nothing for this long is abandoned and retried. */
    requestTimeout: duration.default(30_000),
    /** The shortest and the longest wait between two looks for an image that is not there yet. */
    retryInitial: duration.default(1_000),
    retryMax: duration.default(60_000),
  })
  .prefault({});

const tokenSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1 to 63 letters, digits, ".", "_" or "-"'),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits: the SHA-256 of the token, as `image-updater token` prints it'),
  repositories: globs,
  images: globs,
  keywords: globs,
  admin: z.boolean().default(false),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int('must be a whole number').min(0, 'must be from 0 to 65535').max(65535, 'must be from 0 to 65535').default(8080),
      maxBodyBytes: z
        .number()
        .int('must be a whole number')
        .min(1024, 'must be from 1024 to 16777216 bytes')
        .max(16 * 1024 * 1024, 'must be from 1024 to 16777216 bytes')
        .default(64 * 1024),
      shutdownTimeout: duration.default(10_000),
    })
    .prefault({}),
  database: z
    .strictObject({
      path: z.string().min(1).default('./data/image-updater.db'),
      synchronous: z.enum(['full', 'normal']).default('full'),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
  policy: z
    .strictObject({
      mutableTags: z.array(z.string().min(1)).default(['latest']),
    })
    .prefault({}),
  syncer: z
    .strictObject({
      workDir: z.string().min(1).default('./data/work'),
      quietWindow: duration
        .refine((ms) => ms <= 2000, 'must be at most 2s: a longer wait would hold back every release')
        .default(200),
      pollInterval: duration.default(1000),
      concurrency: z.number().int('must be a whole number').min(1, 'must be from 1 to 32').max(32, 'must be from 1 to 32').default(4),
      pushAttempts: z.number().int('must be a whole number').min(1, 'must be from 1 to 20').max(20, 'must be from 1 to 20').default(4),
      gitTimeout: duration.default(60_000),
      validateTimeout: duration.default(60_000),
      retryInitial: duration.default(5_000),
      retryMax: duration.default(600_000),
      /** `image-updater syncer` alone: serve /metrics and /healthz on server.host and this port (0: any free port). */
      metricsPort: int(0, 65535).optional(),
      author: z
        .strictObject({ name: z.string().min(1).default('image-updater'), email: z.string().min(3).default('image-updater@localhost') })
        .prefault({}),
    })
    .prefault({}),
  registries: z.array(registrySchema).default([]),
  mirror: mirrorSchema,
  repositories: z.array(repositorySchema).min(1, 'must list at least one repository'),
  tokens: z.array(tokenSchema).min(1, 'must list at least one token; `image-updater token` makes one'),
});

export type Config = z.output<typeof configSchema> & {
  /** Absolute path of the file the configuration came from. */
  file: string;
};
export type RepositoryConfig = Config['repositories'][number];
export type TokenConfig = Config['tokens'][number];
export type RegistryConfig = Config['registries'][number];
export type MirrorConfig = Config['mirror'];
export type PullRequestConfig = NonNullable<RepositoryConfig['pullRequest']>;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function entries(raw: unknown, key: string): Array<[number, Record<string, unknown>]> {
  const list = isRecord(raw) ? raw[key] : undefined;
  return Array.isArray(list)
    ? list.flatMap((item, i): Array<[number, Record<string, unknown>]> => (isRecord(item) ? [[i, item]] : []))
    : [];
}

function duplicates(raw: unknown, list: string, field: string, what: string): Problem[] {
  const seen = new Map<unknown, number>();
  const problems: Problem[] = [];
  for (const [i, item] of entries(raw, list)) {
    const value = item[field];
    if (typeof value !== 'string') continue;
    const first = seen.get(value);
    if (first === undefined) seen.set(value, i);
    else problems.push({ path: [list, i, field], kind: 'invalid', message: `${what} is already used by ${list}[${first}]` });
  }
  return problems;
}

/** `owner/name` from a GitHub-style URL (`https://host/owner/name.git`, `git@host:owner/name.git`), if it is one. */
export function githubRepository(url: string): string | undefined {
  const m = /^(?:https?:\/\/[^/]+\/|ssh:\/\/[^/]+\/|[^@/\s]+@[^:/\s]+:)([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+?)(?:\.git)?\/?$/.exec(url);
  return m?.[1];
}

/**
 * Checks that span fields, run on the raw document so that they are reported
 * together with the schema's problems rather than after they are fixed.
 */
export function crossFieldProblems(raw: unknown): Problem[] {
  const problems = [
    ...duplicates(raw, 'repositories', 'name', 'this name'),
    ...duplicates(raw, 'tokens', 'name', 'this name'),
    ...duplicates(raw, 'tokens', 'sha256', 'this hash'),
    ...duplicates(raw, 'registries', 'host', 'this host'),
  ];
  for (const [i, registry] of entries(raw, 'registries')) {
    if ((registry.username === undefined) !== (registry.password === undefined)) {
      problems.push({ path: ['registries', i, registry.username === undefined ? 'username' : 'password'], kind: 'invalid', message: 'must be given with the other: username and password go together' });
    }
  }
  const mirror = isRecord(raw) && isRecord(raw.mirror) ? raw.mirror : {};
  const mirrorOn = mirror.mode === 'verify' || mirror.mode === 'copy';
  if (mirrorOn && mirror.registry === undefined) {
    problems.push({ path: ['mirror', 'registry'], kind: 'invalid', message: `is required when mirror.mode is "${String(mirror.mode)}": the registry next to the cluster, host[:port][/prefix]` });
  }
  for (const [i, repository] of entries(raw, 'repositories')) {
    const signing = isRecord(repository.signing) ? repository.signing : undefined;
    if (signing && (signing.sshKeyFile === undefined) === (signing.sshKey === undefined)) {
      problems.push({ path: ['repositories', i, 'signing'], kind: 'invalid', message: 'must give exactly one of sshKeyFile and sshKey' });
    }
    if (repository.writeBack === 'pull-request') {
      if (!isRecord(repository.pullRequest)) {
        problems.push({ path: ['repositories', i, 'pullRequest'], kind: 'invalid', message: 'is required with writeBack "pull-request": at least github.token' });
      } else {
        const github = isRecord(repository.pullRequest.github) ? repository.pullRequest.github : {};
        if (github.repository === undefined && typeof repository.url === 'string' && !githubRepository(repository.url)) {
          problems.push({ path: ['repositories', i, 'pullRequest', 'github', 'repository'], kind: 'invalid', message: 'is required: owner/name cannot be read from the repository URL' });
        }
      }
    }
    if (repository.pinDigest === true && !mirrorOn) {
      problems.push({ path: ['repositories', i, 'pinDigest'], kind: 'invalid', message: 'needs mirror.mode "verify" or "copy": the pinned digest is the one the mirror confirmed' });
    }
  }
  const names = entries(raw, 'repositories')
    .map(([, r]) => r.name)
    .filter((n): n is string => typeof n === 'string');
  for (const [i, token] of entries(raw, 'tokens')) {
    const patternsOf = (key: string): Array<[number, string]> =>
      Array.isArray(token[key])
        ? (token[key] as unknown[]).flatMap((p, k): Array<[number, string]> => (typeof p === 'string' && p ? [[k, p]] : []))
        : [];
    for (const [k, pattern] of patternsOf('repositories')) {
      if (names.length > 0 && !names.some((n) => globsToRegex([pattern]).test(n))) {
        problems.push({
          path: ['tokens', i, 'repositories', k],
          kind: 'invalid',
          message: `pattern "${pattern}" matches no configured repository (${names.join(', ')})`,
        });
      }
    }
    for (const [k, pattern] of patternsOf('images')) {
      const first = pattern.split('/')[0]!;
      const isRegistry = first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('*');
      if (!isRegistry) {
        problems.push({
          path: ['tokens', i, 'images', k],
          kind: 'invalid',
          message: `pattern "${pattern}" can never match: images are matched in normalised form, so write "docker.io/${pattern.includes('/') ? pattern : `library/${pattern}`}"`,
        });
      }
    }
  }
  return problems;
}
