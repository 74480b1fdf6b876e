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

/**
 * Lines under `dir` that contain one of the keywords, in files matching the
 * include globs. `.git` is never searched and symbolic links are never
 * followed (rg's default); .gitignored files are skipped, as git would not
 * commit them.
 */
export async function findCandidates(dir: string, keywords: readonly string[], include: readonly string[], signal?: AbortSignal): Promise<Candidate[]> {
  const args = ['--json', '--no-config', '--hidden', '--fixed-strings', '--glob', '!.git'];
  for (const glob of include) args.push('--glob', glob);
  for (const keyword of keywords) args.push('-e', keyword);
  args.push('--', '.');
  const child = spawn('rg', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], signal });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const candidates: Candidate[] = [];
  for await (const line of createInterface({ input: child.stdout })) {
    const event = JSON.parse(line) as { type: string; data: { path: RgText; line_number: number; lines: RgText } };
    if (event.type !== 'match') continue;
    candidates.push({ path: decode(event.data.path).replace(/^\.\//, ''), line: event.data.line_number, text: decode(event.data.lines) });
  }
  let code: number | null;
  try {
    code = await exited;
  } catch (err) {
    throw new SyncError('SEARCH_FAILED', `ripgrep could not run: ${(err as Error).message}; is "rg" installed?`, { cause: err });
  }
  if (code !== 0 && code !== 1) {
    throw new SyncError('SEARCH_FAILED', `ripgrep failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' ')}`);
  }
  return candidates;
}
