// Remembers, per working copy, where each keyword's candidate lines were at a
// commit, so that the next sync rescans only the files that changed since:
// on a 5,000-file repository one rg over everything costs 50-80 ms, a rescan
// of the one or two files a commit touched a few.
//
// It never judges a path by a glob itself (rg's globs are the only rule): a
// full search also lists the searchable files; a commit that adds, renames or
// retypes a file makes the next search a full one again.
import type { Candidate } from './plan-edits.ts';

export interface FileChange {
  status: string;
  path: string;
}

/** Parses `git diff --name-status --no-renames -z` output. */
export function parseNameStatus(output: string): FileChange[] {
  const parts = output.split('\0');
  const changes: FileChange[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (parts[i]) changes.push({ status: parts[i]!, path: parts[i + 1]! });
  }
  return changes;
}

export interface MarkerSearch {
  /** Full search for keywords; with `paths`, only those files. */
  find(keywords: readonly string[], paths?: readonly string[]): Promise<Candidate[]>;
  /** The files a full search reads. */
  listSearchable(): Promise<string[]>;
  /** Files changed between two commits, or undefined when git cannot tell (e.g. an unknown commit). */
  changes(from: string, to: string): Promise<FileChange[] | undefined>;
}

interface Entry {
  sha: string;
  include: string;
  searchable: Set<string>;
  byKeyword: Map<string, Candidate[]>;
}

/** Creates an index shared by the syncs of one process. */
export function createMarkerIndex() {
  const entries = new Map<string, Entry>();

  function split(candidates: Candidate[], keywords: readonly string[], into: Map<string, Candidate[]>): void {
    for (const keyword of keywords) into.set(keyword, [...(into.get(keyword) ?? []), ...candidates.filter((c) => c.text?.includes(keyword))]);
  }

  return {
    /**
     * Candidate lines for `keywords` in the working copy `dir`, which is exactly at commit `sha`
     * (freshly reset). `stats` says how the answer was made, for the sync's log line.
     */
    async find(dir: string, sha: string, include: readonly string[], keywords: readonly string[], search: MarkerSearch): Promise<{ candidates: Candidate[]; mode: 'full' | 'incremental' | 'cached' }> {
      const includeKey = include.join('\0');
      let entry = entries.get(dir);
      let mode: 'full' | 'incremental' | 'cached' = 'cached';
      if (entry && (entry.include !== includeKey || entry.sha !== sha)) {
        const changes = entry.include === includeKey ? await search.changes(entry.sha, sha) : undefined;
        if (!changes || changes.some((c) => c.status !== 'M' && c.status !== 'D')) {
          entry = undefined;
        } else {
          const removed = new Set(changes.map((c) => c.path));
          const rescan = changes.filter((c) => c.status === 'M' && entry!.searchable.has(c.path)).map((c) => c.path);
          for (const c of changes) if (c.status === 'D') entry.searchable.delete(c.path);
          for (const [keyword, list] of entry.byKeyword) entry.byKeyword.set(keyword, list.filter((c) => !removed.has(c.path)));
          if (rescan.length > 0 && entry.byKeyword.size > 0) split(await search.find([...entry.byKeyword.keys()], rescan), [...entry.byKeyword.keys()], entry.byKeyword);
          entry.sha = sha;
          mode = 'incremental';
        }
      }
      if (!entry) {
        const [searchable, candidates] = await Promise.all([search.listSearchable(), search.find(keywords)]);
        entry = { sha, include: includeKey, searchable: new Set(searchable), byKeyword: new Map() };
        split(candidates, keywords, entry.byKeyword);
        entries.set(dir, entry);
        mode = 'full';
      }
      const missing = keywords.filter((k) => !entry!.byKeyword.has(k));
      if (missing.length > 0) {
        split(await search.find(missing), missing, entry.byKeyword);
        if (mode === 'cached') mode = 'incremental';
      }
      // A line may hold several keywords (it cannot end with two markers, but rg matched text): dedupe.
      const seen = new Set<string>();
      const candidates = keywords
        .flatMap((k) => entry!.byKeyword.get(k) ?? [])
        .filter((c) => {
          const key = `${c.path}\0${c.line}`;
          return seen.has(key) ? false : (seen.add(key), true);
        });
      return { candidates, mode };
    },

    /** Forgets a working copy (after it was re-cloned or left in an unknown state). */
    forget(dir: string): void {
      entries.delete(dir);
    },
  };
}

export type MarkerIndex = ReturnType<typeof createMarkerIndex>;
