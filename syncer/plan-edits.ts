// Planning a sync, as a pure function: which lines change for which target,
// which targets are already at their tag, and which have no marked line.
import { findMarker, referencedNames, rewriteLine, type LineTarget } from './rewrite-line.ts';

/** A line ripgrep found that may carry a marker (1-based line number, and its text when known). */
export interface Candidate {
  path: string;
  line: number;
  text?: string;
}

export interface PlanTarget extends LineTarget {
  id: number;
  keyword: string;
}

export interface LineChange {
  path: string;
  line: number;
  before: string;
  after: string;
  /** The references as the line now holds them. */
  references: string[];
}

export type TargetOutcome = 'change' | 'already' | 'not_found';

export interface TargetPlan {
  targetId: number;
  outcome: TargetOutcome;
  changes: LineChange[];
  /** The tags the changed lines held before (usually one). */
  fromTags: string[];
}

export interface Plan {
  targets: TargetPlan[];
  /** New content of every file that changes, by path. */
  files: Map<string, string>;
}

const JSONNET = /\.(jsonnet|libsonnet)$/;

/** Splits text into lines, each with its own line ending ("" for a last line without one). */
export function splitLines(text: string): Array<{ text: string; eol: string }> {
  const lines: Array<{ text: string; eol: string }> = [];
  const re = /\r?\n/g;
  let start = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    lines.push({ text: text.slice(start, m.index), eol: m[0] });
    start = m.index + m[0].length;
  }
  if (start < text.length) lines.push({ text: text.slice(start), eol: '' });
  return lines;
}

/**
 * The candidates worth reading: those whose text (when ripgrep gave it) names
 * one of the images by its last path component. A keyword shared by a thousand
 * lines then costs one file read per image, not a thousand.
 */
export function relevantCandidates(candidates: readonly Candidate[], targets: readonly PlanTarget[]): Candidate[] {
  const lastComponents = [...new Set(targets.flatMap((t) => [t.image, ...t.aliases]).map((name) => name.slice(name.lastIndexOf('/') + 1)))];
  return candidates.filter((c) => c.text === undefined || lastComponents.some((last) => c.text!.includes(last)));
}

/**
 * Plans the edits for `targets` over the candidate lines of `files` (path →
 * content). Only lines ending with a marker for a target's keyword are touched.
 */
export function planEdits(files: ReadonlyMap<string, string>, candidates: readonly Candidate[], targets: readonly PlanTarget[]): Plan {
  // Targets by keyword and image name (and alias): a line is only tried against the targets it names.
  const byName = new Map<string, PlanTarget[]>();
  for (const t of targets) {
    for (const name of [t.image, ...t.aliases]) {
      const key = `${t.keyword}\u0000${name}`;
      byName.set(key, [...(byName.get(key) ?? []), t]);
    }
  }
  const plans = new Map(targets.map((t) => [t.id, { targetId: t.id, outcome: 'not_found' as TargetOutcome, changes: [] as LineChange[], fromTags: [] as string[] }]));
  const linesByPath = new Map<string, Set<number>>();
  for (const c of candidates) linesByPath.set(c.path, (linesByPath.get(c.path) ?? new Set()).add(c.line));

  const newFiles = new Map<string, string>();
  for (const [path, lineNumbers] of [...linesByPath].sort(([a], [b]) => a.localeCompare(b))) {
    const content = files.get(path);
    if (content === undefined) continue;
    const lines = splitLines(content);
    let changed = false;
    for (const n of [...lineNumbers].sort((a, b) => a - b)) {
      const line = lines[n - 1];
      if (!line) continue;
      const marker = findMarker(line.text, JSONNET.test(path));
      if (!marker) continue;
      const named = new Set(referencedNames(line.text.slice(0, marker.commentStart)).flatMap((name) => byName.get(`${marker.keyword}\u0000${name}`) ?? []));
      for (const target of named) {
        const plan = plans.get(target.id)!;
        const result = rewriteLine(line.text, marker.commentStart, target);
        if (result.kind === 'no-reference') continue;
        if (result.kind === 'already') {
          if (plan.outcome === 'not_found') plan.outcome = 'already';
          continue;
        }
        plan.outcome = 'change';
        plan.changes.push({ path, line: n, before: line.text, after: result.text, references: result.to });
        for (const tag of result.from) if (!plan.fromTags.includes(tag)) plan.fromTags.push(tag);
        line.text = result.text;
        changed = true;
      }
    }
    if (changed) newFiles.set(path, lines.map((l) => l.text + l.eol).join(''));
  }
  return { targets: targets.map((t) => plans.get(t.id)!), files: newFiles };
}
