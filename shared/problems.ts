// Turns zod issues into problems that name the field and the rule broken,
// shared by configuration loading and request validation.
import type { z } from 'zod';

export type PathKey = string | number;

/** One thing wrong with an input: where, what kind, and a sentence about it. */
export interface Problem {
  path: PathKey[];
  kind: 'missing' | 'unknown' | 'invalid';
  message: string;
}

/** `tokens[0].sha256` for ['tokens', 0, 'sha256']. */
export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    out += typeof key === 'number' ? `[${key}]` : out === '' ? key : `.${key}`;
  }
  return out;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Problems from a failed parse; the parse must have run with `reportInput: true`. */
export function problemsFromZod(error: z.ZodError): Problem[] {
  const problems: Problem[] = [];
  for (const issue of error.issues) {
    const path = issue.path.filter((k): k is PathKey => typeof k !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({ path: [...path, key], kind: 'unknown', message: 'is not a known field' });
      }
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      problems.push({ path, kind: 'missing', message: 'is required' });
    } else if (issue.code === 'invalid_type') {
      problems.push({
        path,
        kind: 'invalid',
        message: `must be ${article(issue.expected)}, not ${describeType(issue.input)}`,
      });
    } else {
      problems.push({ path, kind: 'invalid', message: issue.message });
    }
  }
  return problems;
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The first line of a yaml library error, without its redundant "at line N, column M:" suffix. */
export function yamlErrorText(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}
