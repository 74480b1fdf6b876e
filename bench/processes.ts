// Starting the servers a benchmark measures, each in its own process.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Spawns a program, logging to `logFile`, and resolves with the port it logs as listening.
 * A `.ts` entry with a shebang (bin/image-updater.ts) runs as shipped, with its Node flags.
 */
export async function spawnListening(args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; port: number }> {
  const out = openSync(logFile, 'w');
  const [program, ...rest] = args;
  const executable = program!.endsWith('bin/image-updater.ts');
  const child = executable
    ? spawn(program!, rest, { stdio: ['ignore', out, out], env: { ...process.env, ...env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` } })
    : spawn(process.execPath, args, { stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${path.basename(args[0]!)} exited:\n${readFileSync(logFile, 'utf8')}`);
    const line = readFileSync(logFile, 'utf8')
      .split('\n')
      .find((l) => l.includes('"msg":"listening"'));
    if (line) return { child, port: (JSON.parse(line) as { port: number }).port };
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  throw new Error(`${args.join(' ')} did not listen within 30 s`);
}

/** Stops a child with SIGTERM and waits for it. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}
