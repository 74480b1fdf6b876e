// The ripgrep adapter: one `rg` call for all keywords of a batch, spawned with
// an argument array and stdin closed, its --json output parsed as a stream.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SyncError } from '../shared/errors.ts';
import type { Candidate } from './plan-edits.ts';

interface RgText {
  text?: string;
  bytes?: string;
}

function decode(field: RgText): string {
  return field.text ?? Buffer.from(field.bytes ?? '', 'base64').toString('latin1');
}

/** Runs rg in `dir`; resolves with its standard output lines. Exit 1 (nothing found) is not an error. */
async function rg(dir: string, args: string[], signal: AbortSignal | undefined, onLine: (line: string) => void): Promise<void> {
  const child = spawn('rg', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], signal });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  for await (const line of createInterface({ input: child.stdout })) onLine(line);
  let code: number | null;
  try {
    code = await exited;
  } catch (err) {
    throw new SyncError('SEARCH_FAILED', `ripgrep could not run: ${(err as Error).message}; is "rg" installed?`, { cause: err });
  }
  if (code !== 0 && code !== 1) {
    throw new SyncError('SEARCH_FAILED', `ripgrep failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`);
  }
}

function baseArgs(include: readonly string[]): string[] {
  const args = ['--no-config', '--hidden', '--glob', '!.git'];
  for (const glob of include) args.push('--glob', glob);
  return args;
}

/**
 * Lines that contain one of the keywords: in the files matching the include
 * globs under `dir`, or only in `paths` when given (explicit paths bypass the
 * globs: pass only files a full search would include). `.git` is never
 * searched and symbolic links are never followed. The include globs take
 * precedence over .gitignore, so tracked files are found even if it lists them.
 */
export async function findCandidates(dir: string, keywords: readonly string[], include: readonly string[], signal?: AbortSignal, paths?: readonly string[]): Promise<Candidate[]> {
  const args = ['--json', '--fixed-strings', ...baseArgs(include)];
  for (const keyword of keywords) args.push('-e', keyword);
  args.push('--', ...(paths ?? ['.']));
  const candidates: Candidate[] = [];
  await rg(dir, args, signal, (line) => {
    const event = JSON.parse(line) as { type: string; data: { path: RgText; line_number: number; lines: RgText } };
    if (event.type !== 'match') return;
    candidates.push({ path: decode(event.data.path).replace(/^\.\//, ''), line: event.data.line_number, text: decode(event.data.lines) });
  });
  return candidates;
}

/** Every file a full search would read: regular files under `dir` matching the include globs. */
export async function listSearchable(dir: string, include: readonly string[], signal?: AbortSignal): Promise<string[]> {
  const files: string[] = [];
  await rg(dir, ['--files', ...baseArgs(include), '--', '.'], signal, (line) => files.push(line.replace(/^\.\//, '')));
  return files;
}
