// The marker contract (DESIGN §4) and the edit of one marked line, as pure
// functions over the line's text: no file, no I/O, every byte but the tag
// (and digest) kept.
import { KEYWORD, parseReference } from '../shared/image-ref.ts';

/** What a line must become: the image (normalised, plus names that also count, e.g. its mirror) and its new tag. */
export interface LineTarget {
  image: string;
  aliases: readonly string[];
  tag: string;
  digest: string | null;
  /** Write `@digest` even where the line has none (a repository's `pinDigest`). */
  pinDigest?: boolean;
}

export type LineOutcome =
  | { kind: 'changed'; text: string; from: string[]; to: string[] }
  | { kind: 'already' }
  | { kind: 'no-reference' };

// A comment ends the line: `# K` anywhere, `// K` in jsonnet; at line start or after white space
// (in YAML `a#b` is part of the value, not a comment). Trailing spaces and tabs are allowed.
const YAML_MARKER = /(^|[ \t])#[ \t]*([^\s#]+)[ \t]*$/;
const JSONNET_MARKER = /(^|[ \t])(?:#|\/\/)[ \t]*([^\s#/]+)[ \t]*$/;

/**
 * The keyword a line is marked with, and where its comment starts; undefined
 * when the line does not end with a comment whose whole text is a keyword.
 */
export function findMarker(line: string, jsonnet: boolean): { keyword: string; commentStart: number } | undefined {
  const match = (jsonnet ? JSONNET_MARKER : YAML_MARKER).exec(line);
  if (!match || !KEYWORD.test(match[2]!)) return undefined;
  return { keyword: match[2]!, commentStart: match.index + match[1]!.length };
}

// Characters an image reference is made of; quotes, spaces, `=`, `,` and `;` end it.
const TOKEN = /[A-Za-z0-9[][A-Za-z0-9._\-/:@[\]]*/g;

/** The normalised names of every image reference in a piece of a line. */
export function referencedNames(code: string): string[] {
  const names: string[] = [];
  for (const m of code.matchAll(TOKEN)) {
    const ref = parseReference(m[0]);
    if (ref) names.push(ref.name.normalized);
  }
  return names;
}

/**
 * Rewrites, in the part of the line before its marker comment, every reference
 * to the target's image (or an alias) to the target's tag, keeping the name as
 * written. A digest on the line is replaced by the target's, or dropped when the
 * target has none: a stale digest would keep deploying the old image. With
 * `pinDigest`, the digest is written where the line has none.
 */
export function rewriteLine(line: string, commentStart: number, target: LineTarget): LineOutcome {
  const code = line.slice(0, commentStart);
  let out = '';
  let last = 0;
  let matched = false;
  const from: string[] = [];
  const to: string[] = [];
  for (const m of code.matchAll(TOKEN)) {
    const ref = parseReference(m[0]);
    if (!ref || (ref.name.normalized !== target.image && !target.aliases.includes(ref.name.normalized))) continue;
    matched = true;
    const withDigest = target.digest && (ref.digest !== undefined || target.pinDigest);
    const wanted = `${ref.written}:${target.tag}${withDigest ? `@${target.digest}` : ''}`;
    if (wanted === m[0]) continue;
    from.push(ref.tag ?? '(none)');
    to.push(wanted);
    out += code.slice(last, m.index) + wanted;
    last = m.index + m[0].length;
  }
  if (!matched) return { kind: 'no-reference' };
  if (from.length === 0) return { kind: 'already' };
  return { kind: 'changed', text: out + line.slice(last), from, to };
}
