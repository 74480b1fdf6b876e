// The programs the syncer runs, checked once at start-up so that a missing
// one is a clear refusal to start rather than a target failing later.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

const TOOLS = [
  { command: 'git', args: ['--version'], package: 'git', required: true },
  { command: 'rg', args: ['--version'], package: 'ripgrep', required: true },
  { command: 'jsonnet', args: ['--version'], package: 'jsonnet', required: false },
] as const;

/** Missing programs: `required` ones stop the syncer, the others only disable what needs them. */
export async function missingTools(): Promise<Array<{ command: string; package: string; required: boolean }>> {
  const missing = [];
  for (const tool of TOOLS) {
    try {
      await run(tool.command, [...tool.args], { timeout: 10_000 });
    } catch {
      missing.push({ command: tool.command, package: tool.package, required: tool.required });
    }
  }
  return missing;
}
