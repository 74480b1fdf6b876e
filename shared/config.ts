// The configuration schema, its defaults and the checks across fields.
// Reading the file and reporting problems with line numbers is config-file.ts.
import { z } from 'zod';
import { branchProblem } from './git-ref.ts';
import { globsToRegex } from './glob.ts';
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
  auth: z
    .strictObject({
      username: z.string().min(1).optional(),
      password: z.string().min(1, 'must not be empty').optional(),
      sshKeyFile: z.string().min(1).optional(),
      knownHostsFile: z.string().min(1).optional(),
    })
    .optional(),
});

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
      author: z
        .strictObject({ name: z.string().min(1).default('image-updater'), email: z.string().min(3).default('image-updater@localhost') })
        .prefault({}),
    })
    .prefault({}),
  repositories: z.array(repositorySchema).min(1, 'must list at least one repository'),
  tokens: z.array(tokenSchema).min(1, 'must list at least one token; `image-updater token` makes one'),
});

export type Config = z.output<typeof configSchema> & {
  /** Absolute path of the file the configuration came from. */
  file: string;
};
export type RepositoryConfig = Config['repositories'][number];
export type TokenConfig = Config['tokens'][number];

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

/**
 * Checks that span fields, run on the raw document so that they are reported
 * together with the schema's problems rather than after they are fixed.
 */
export function crossFieldProblems(raw: unknown): Problem[] {
  const problems = [
    ...duplicates(raw, 'repositories', 'name', 'this name'),
    ...duplicates(raw, 'tokens', 'name', 'this name'),
    ...duplicates(raw, 'tokens', 'sha256', 'this hash'),
  ];
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
