// POST /v1/images throughput and latency over loopback HTTP, at several
// concurrencies, beside a bare express handler measured in the same run.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import autocannon from 'autocannon';
import { spawnListening, stop } from './processes.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = 'iu_bench-token';
const CONCURRENCIES = (process.env.BENCH_CONC ?? '1,8,32,64').split(',').map(Number);
// Short rounds, alternating the two servers, so that a noisy neighbour (CPU steal on a VM)
// hits both alike; each row is the median of its rounds.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);

interface Row {
  server: string;
  concurrency: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU the server process used per request (all its threads, user + system), in microseconds. */
  cpuUs: number;
  errors: number;
}

/** CPU time a process has used (all threads, user + system), in microseconds; 0 where /proc is missing. */
function cpuTimeUs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of the line (after pid and comm), in clock ticks of 10 ms.
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return 0;
  }
}

async function load(server: { port: number; child: ChildProcess }, concurrency: number, seconds: number): Promise<Omit<Row, 'server'>> {
  let n = 0;
  const cpuBefore = cpuTimeUs(server.child.pid);
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}`,
    connections: concurrency,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/v1/images',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        // A new tag every time across 500 images: each request writes (supersede + two events).
        setupRequest: (req) => {
          n++;
          return {
            ...req,
            body: JSON.stringify({ image: `gcr.io/acme/service-${n % 500}`, tag: `1.0.${n}`, keyword: 'image-automation-prod' }),
          };
        },
      },
    ],
  });
  return {
    concurrency,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUs: result.requests.total > 0 ? (cpuTimeUs(server.child.pid) - cpuBefore) / result.requests.total : 0,
    errors: result.errors + result.timeouts + result.non2xx,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Total and steal jiffies from /proc/stat (zeros where there is none). */
function readSteal(): { total: number; steal: number } {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
    return { total: cpu.reduce((a, b) => a + b, 0), steal: cpu[7] ?? 0 };
  } catch {
    return { total: 0, steal: 0 };
  }
}

function stealShare(a: { total: number; steal: number }, b: { total: number; steal: number }): number {
  return b.total > a.total ? (b.steal - a.steal) / (b.total - a.total) : 0;
}

/** Runs the benchmark; returns false when a target is missed. */
export async function benchServerThroughput(): Promise<boolean> {
  const dir = mkdtempSync(path.join(tmpdir(), 'iu-bench-'));
  const config = path.join(dir, 'config.yaml');
  writeFileSync(
    config,
    `server: { host: 127.0.0.1, port: 0 }
database: { path: ${path.join(dir, 'bench.db')} }   # synchronous: full, the default
log: { level: info }
repositories:
  - name: gitops
    url: https://git.example.com/acme/gitops.git
tokens:
  - name: bench
    sha256: ${createHash('sha256').update(TOKEN).digest('hex')}
    repositories: ["gitops"]
    images: ["gcr.io/acme/*"]
    keywords: ["image-automation-*"]
`,
  );
  // The API process alone (`image-updater server`), as deployed beside a separate syncer: with `serve`,
  // the in-process syncer would spend the run failing to reach the config's git host and recording
  // 500 retries at a time, which measures that failure rather than the API.
  const ours = await spawnListening([path.join(ROOT, 'bin/image-updater.ts'), 'server', '--config', config], path.join(dir, 'ours.log'));
  const bare = await spawnListening([path.join(ROOT, 'bench/bare-server.ts')], path.join(dir, 'bare.log'));
  const rows: Row[] = [];
  const stealBefore = readSteal();
  try {
    await load(ours, 32, 1);
    await load(bare, 32, 1);
    for (const c of CONCURRENCIES) {
      const rounds: Record<string, Array<Omit<Row, 'server'>>> = { 'bare express': [], 'image-updater': [] };
      for (let r = 0; r < ROUNDS; r++) {
        rounds['bare express']!.push(await load(bare, c, SECONDS));
        rounds['image-updater']!.push(await load(ours, c, SECONDS));
      }
      for (const [server, results] of Object.entries(rounds)) {
        rows.push({
          server,
          concurrency: c,
          rps: median(results.map((x) => x.rps)),
          p50: median(results.map((x) => x.p50)),
          p99: median(results.map((x) => x.p99)),
          cpuUs: median(results.map((x) => x.cpuUs)),
          errors: results.reduce((sum, x) => sum + x.errors, 0),
        });
      }
    }
  } finally {
    await stop(ours.child);
    await stop(bare.child);
  }
  const steal = stealShare(stealBefore, readSteal());

  console.log(
    `\nPOST /v1/images over loopback HTTP: median of ${ROUNDS} alternating rounds of ${SECONDS} s (synchronous=FULL, group commit)`,
  );
  console.log('image-updater: the `server` role. CPU us/req: the server process, all threads (HTTP, database writer, GC).');
  console.log(`CPU steal by other VMs during the run: ${(steal * 100).toFixed(0)}% (figures are noisy when this is high)`);
  console.log('server          conc    req/s    p50 ms   p99 ms   CPU us/req   errors');
  for (const r of rows) {
    console.log(
      `${r.server.padEnd(15)} ${String(r.concurrency).padStart(4)} ${r.rps.toFixed(0).padStart(8)} ${r.p50.toFixed(1).padStart(9)} ${r.p99.toFixed(1).padStart(8)} ${r.cpuUs.toFixed(0).padStart(12)} ${String(r.errors).padStart(8)}`,
    );
  }
  const at32 = (server: string) => rows.find((r) => r.server === server && r.concurrency === 32)!;
  const ratio = at32('image-updater').rps / at32('bare express').rps;
  const checks = [
    [`throughput at concurrency 32 >= 3000 req/s`, at32('image-updater').rps >= 3000, at32('image-updater').rps.toFixed(0)],
    [`p99 at concurrency 32 < 20 ms`, at32('image-updater').p99 < 20, `${at32('image-updater').p99} ms`],
    [`ratio to bare express at concurrency 32 >= 0.6`, ratio >= 0.6, ratio.toFixed(2)],
    [`no errors`, rows.every((r) => r.errors === 0), String(rows.reduce((s, r) => s + r.errors, 0))],
  ] as const;
  for (const [name, ok, value] of checks) console.log(`${ok ? 'PASS' : 'MISS'}  ${name}: ${value}`);
  return checks.every(([, ok]) => ok);
}
