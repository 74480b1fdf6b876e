// Runs the real image-updater CLI as a child process, as an operator would.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TOKENS } from './tokens.ts';

export const CLI = fileURLToPath(new URL('../../bin/image-updater.ts', import.meta.url));

/** Runs a CLI command to completion. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface Service {
  child: ChildProcess;
  port: number;
  url: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `image-updater <command>` and resolves once it logs `readyMessage`. */
export async function startService(configFile: string, command = 'serve', env: NodeJS.ProcessEnv = {}, readyMessage = command === 'syncer' ? 'syncer started' : 'listening'): Promise<Service> {
  const child = spawn(process.execPath, [CLI, command, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const port = await new Promise<number>((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (chunk) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === readyMessage) resolve((entry.port as number | undefined) ?? 0);
      }
    });
    void exited.then(({ code }) => reject(new Error(`image-updater exited with ${code} before listening:\n${stderr}`)));
  });
  return { child, port, url: `http://127.0.0.1:${port}`, logs, exited };
}

/** POST /v1/images with the ci token, as CI would. */
export function postImages(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKENS.ci}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}
