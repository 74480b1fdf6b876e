// Reads the YAML configuration file: interpolates ${ENV_VAR} in string values,
// validates it, and reports every problem at once with its line number.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { configSchema, crossFieldProblems, type Config } from './config.ts';
import { formatPath, problemsFromZod, yamlErrorText, type PathKey, type Problem } from './problems.ts';

/** A configuration that cannot be used; `problems` lists every reason, one line each. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(file: string, problems: string[]) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super(`${file}: the configuration has ${count}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const ENV_REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces `${NAME}` in every string value with the environment variable NAME
 * (`$$` writes a literal `$`). Interpolating parsed values, not the raw text,
 * means a variable's content can never change the structure of the file.
 */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv, at: PathKey[] = [], problems: Problem[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REFERENCE, (match, name: string | undefined) => {
      if (name === undefined) return '$';
      const found = env[name];
      if (found === undefined) {
        problems.push({ path: at, kind: 'invalid', message: `environment variable ${name} is not set` });
        return match;
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, [...at, i], problems));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolate(item, env, [...at, key], problems)]),
    );
  }
  return value;
}

function lineOf(doc: Document, lines: LineCounter, at: PathKey[]): number | undefined {
  // A missing key has no node: point at the nearest ancestor that exists.
  for (let depth = at.length; depth >= 0; depth--) {
    const node = doc.getIn(at.slice(0, depth), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  return undefined;
}

/** An absolute path as it is; a relative one resolved against the configuration file's folder. */
function resolveFrom(dir: string, target: string): string {
  return path.isAbsolute(target) ? target : path.resolve(dir, target);
}

/** Parses and validates configuration text; throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => `${file}:${e.linePos?.[0]?.line ?? '?'}: ${yamlErrorText(e.message)}`),
    );
  }
  const problems: Problem[] = [];
  const raw = interpolate(doc.toJS() ?? {}, env, [], problems);
  // An unset variable already explains why its field is invalid: report it once.
  const unset = new Set(problems.map((p) => formatPath(p.path)));
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  const derived = [...(parsed.success ? [] : problemsFromZod(parsed.error)), ...crossFieldProblems(raw)];
  problems.push(...derived.filter((p) => !unset.has(formatPath(p.path))));
  if (!parsed.success || problems.length > 0) {
    throw new ConfigError(
      file,
      problems.map((p) => {
        const line = lineOf(doc, lines, p.path);
        return `${file}${line === undefined ? '' : `:${line}`}: ${formatPath(p.path) || '(top level)'}: ${p.message}`;
      }),
    );
  }
  const dir = path.dirname(path.resolve(file));
  const config = parsed.data;
  return {
    ...config,
    file: path.resolve(file),
    database: { ...config.database, path: resolveFrom(dir, config.database.path) },
    syncer: {
      ...config.syncer,
      workDir: resolveFrom(dir, config.syncer.workDir),
    },
    repositories: config.repositories.map((repo) => ({
      ...repo,
      // A relative local path is relative to the configuration file, like every other path in it.
      url: repo.url.startsWith('./') || repo.url.startsWith('../') ? resolveFrom(dir, repo.url) : repo.url,
      branches: repo.branches ?? [repo.branch],
      auth: repo.auth && {
        ...repo.auth,
        ...(repo.auth.sshKeyFile ? { sshKeyFile: resolveFrom(dir, repo.auth.sshKeyFile) } : {}),
        ...(repo.auth.knownHostsFile ? { knownHostsFile: resolveFrom(dir, repo.auth.knownHostsFile) } : {}),
      },
    })),
  };
}

/** Reads and validates the configuration file; throws ConfigError listing every problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot be read (${code})`]);
  }
  return parseConfig(text, file, env);
}
