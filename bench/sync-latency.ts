// End-to-end latency, POST accepted → commit on the remote, over loopback HTTP
// against git http-backend, on a generated repository of 5,000 files with
// 1,000 marked lines; beside it, in the same run, the floor: the same edit,
// commit and push done by plain git commands.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../test/helpers/app.ts';
import { createRepository, git, GIT_PASSWORD, GIT_USER, startGitServer, type GitServer } from '../test/helpers/git-server.ts';
import { spawnListening, stop } from './processes.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = 'iu_bench-token';
const KEYWORD = 'image-automation-prod';
const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const FILES = 5000;
const MARKED = 1000;

const image = (i: number) => `gcr.io/acme/svc-${i}`;
const fileOf = (i: number) => `apps/group-${String(i % 500).padStart(3, '0')}/svc-${i}.yaml`;

function manifest(i: number, tag: string): string {
  const marked = i < MARKED;
  // ~1 KB of ordinary YAML around the image line.
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-${i}
  labels: { app: svc-${i}, team: team-${i % 17}, tier: backend }
  annotations:
    description: "${'generated manifest for the benchmark '.repeat(8)}"
spec:
  replicas: 2
  selector:
    matchLabels: { app: svc-${i} }
  template:
    metadata:
      labels: { app: svc-${i} }
    spec:
      containers:
        - name: app
          image: ${image(i)}:${tag}${marked ? ` # ${KEYWORD}` : ''}
          ports: [{ containerPort: 8080 }]
          resources: { requests: { cpu: 100m, memory: 128Mi }, limits: { memory: 256Mi } }
`;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface Scenario {
  name: string;
  batch: number;
  quietWindow: string;
}

/** Runs the benchmark; returns false when a target is missed. */
export async function benchSyncLatency(): Promise<boolean> {
  const server: GitServer = await startGitServer();
  const files: Record<string, string> = {};
  for (let i = 0; i < FILES; i++) files[fileOf(i)] = manifest(i, '1.0.0');
  const started = Date.now();
  const bare = createRepository(server, 'bench', files);
  console.log(`\nGenerated ${FILES} files (${MARKED} marked lines) in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const dir = tempDir('iu-bench-sync-');
  const commits = () => Number(git(bare, 'rev-list', '--count', 'main').trim());
  let tagSeq = 0;

  async function startService(quietWindow: string, name = quietWindow, env: NodeJS.ProcessEnv = {}) {
    const config = path.join(dir, `config-${name}.yaml`);
    writeFileSync(
      config,
      `server: { host: 127.0.0.1, port: 0, maxBodyBytes: 1048576 }
database: { path: ${path.join(dir, `db-${name}.sqlite`)} }
log: { level: info }
syncer: { workDir: ${path.join(dir, `work-${name}`)}, quietWindow: ${quietWindow} }
repositories:
  - name: gitops
    url: ${server.url('bench')}
    auth: { username: ${GIT_USER}, password: "\${GIT_PASSWORD}" }
tokens:
  - name: bench
    sha256: ${createHash('sha256').update(TOKEN).digest('hex')}
    repositories: ["gitops"]
    images: ["gcr.io/acme/*"]
    keywords: ["${KEYWORD}"]
`,
    );
    process.env.GIT_PASSWORD = GIT_PASSWORD;
    return spawnListening([path.join(ROOT, 'bin/image-updater.ts'), 'serve', '--config', config], path.join(dir, `serve-${name}.log`), env);
  }

  /** Sends one release of `batch` images (requests of at most 500) and resolves when the remote has its commit. */
  async function release(port: number, batch: number): Promise<number> {
    const tag = `2.0.${++tagSeq}`;
    const landed = new Promise<number>((resolve) => server.afterNextPush(() => resolve(performance.now())));
    const images = Array.from({ length: batch }, (_, i) => i);
    const t0 = performance.now();
    const bodies = [];
    for (let i = 0; i < images.length; i += 500) {
      const chunk = images.slice(i, i + 500).map((n) => ({ image: image(n), tag, keyword: KEYWORD }));
      bodies.push(chunk.length === 1 ? chunk[0] : { updates: chunk });
    }
    const responses = await Promise.all(
      bodies.map((body) =>
        fetch(`http://127.0.0.1:${port}/v1/images`, {
          method: 'POST',
          headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        }),
      ),
    );
    for (const r of responses) if (r.status !== 202) throw new Error(`POST answered ${r.status}: ${await r.text()}`);
    return (await landed) - t0;
  }

  // The floor: what the same change costs with plain git in a clone of our own. Asynchronous:
  // the git server lives in this process, and a blocking call would leave it unable to answer.
  const floorDir = tempDir('iu-bench-floor-');
  const auth = `http.extraHeader=Authorization: Basic ${Buffer.from(`${GIT_USER}:${GIT_PASSWORD}`).toString('base64')}`;
  const gitEnv = { PATH: process.env.PATH, HOME: floorDir, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'floor', GIT_AUTHOR_EMAIL: 'f@example.com', GIT_COMMITTER_NAME: 'floor', GIT_COMMITTER_EMAIL: 'f@example.com' };
  const gitAsync = (cwd: string, ...args: string[]) => run('git', args, { cwd, env: gitEnv });
  await gitAsync(floorDir, '-c', auth, 'clone', '-q', '--single-branch', '-b', 'main', server.url('bench'), 'wc');
  const wc = path.join(floorDir, 'wc');
  async function floor(batch: number): Promise<number> {
    const tag = `3.0.${++tagSeq}`;
    const t0 = performance.now();
    await gitAsync(wc, '-c', auth, 'fetch', '-q', 'origin', 'main');
    await gitAsync(wc, 'reset', '-q', '--hard', 'origin/main');
    for (let i = 0; i < batch; i++) {
      const file = path.join(wc, fileOf(i));
      writeFileSync(file, readFileSync(file, 'utf8').replace(/(image: gcr\.io\/acme\/svc-\d+:)\S+/, `$1${tag}`));
    }
    await gitAsync(wc, 'commit', '-q', '-am', `floor ${tag}`);
    try {
      await gitAsync(wc, '-c', auth, 'push', '-q', 'origin', 'HEAD:main');
    } catch (err) {
      // Nothing else should push while the floor runs: show what did.
      console.log(`floor push rejected; newest commits on the remote:\n${git(bare, 'log', '-3', '--format=%h %ci %s', 'main')}`);
      throw err;
    }
    return performance.now() - t0;
  }

  const scenarios: Scenario[] = [
    { name: 'single image, quiet window 0', batch: 1, quietWindow: '0' },
    { name: 'single image, default quiet window (200ms)', batch: 1, quietWindow: '200ms' },
    { name: 'batch of 50, quiet window 0', batch: 50, quietWindow: '0' },
    { name: 'batch of 1000 (2 requests), default window', batch: 1000, quietWindow: '200ms' },
  ];
  const rows: Array<{ name: string; p50: number; p95: number; floor50: number; commitsPerRelease: number }> = [];
  let tracing = { off: 0, on: 0, spans: 0 };

  /**
   * Single-image latency with traces exported over OTLP (http/protobuf, batched, to a local
   * receiver) beside the same service without tracing, releases alternating between the two.
   */
  async function compareTracing(): Promise<typeof tracing> {
    let spans = 0;
    const receiver = http.createServer((req, res) => {
      req.on('data', () => {});
      req.on('end', () => {
        spans++;
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const otlp = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    const off = await startService('0', 'tracing-off');
    const on = await startService('0', 'tracing-on', { OTEL_EXPORTER_OTLP_ENDPOINT: otlp });
    try {
      await release(off.port, 1);
      await release(on.port, 1);
      const offMs: number[] = [];
      const onMs: number[] = [];
      for (let r = 0; r < RUNS * 2; r++) {
        offMs.push(await release(off.port, 1));
        onMs.push(await release(on.port, 1));
      }
      await stop(on.child); // flushes its last spans
      return { off: percentile(offMs, 50), on: percentile(onMs, 50), spans };
    } finally {
      await stop(off.child);
      await stop(on.child);
      await new Promise((resolve) => receiver.close(resolve));
    }
  }
  let peakRss = 0;
  try {
    for (const quietWindow of ['0', '200ms']) {
      const service = await startService(quietWindow);
      try {
        await release(service.port, 1); // warm-up: the first sync clones
        for (const s of scenarios.filter((x) => x.quietWindow === quietWindow)) {
          const before = commits();
          const latencies: number[] = [];
          for (let r = 0; r < RUNS; r++) latencies.push(await release(service.port, s.batch));
          const perRelease = (commits() - before) / RUNS;
          const floors: number[] = [];
          for (let r = 0; r < Math.min(RUNS, 10); r++) floors.push(await floor(s.batch));
          rows.push({ name: s.name, p50: percentile(latencies, 50), p95: percentile(latencies, 95), floor50: percentile(floors, 50), commitsPerRelease: perRelease });
        }
        const status = readFileSync(`/proc/${service.child.pid}/status`, 'utf8');
        peakRss = Math.max(peakRss, Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024);
      } finally {
        await stop(service.child);
      }
    }
    tracing = await compareTracing();
  } finally {
    await server.close();
  }

  console.log(`End-to-end latency, POST → commit on the remote (${RUNS} runs each; floor: plain git fetch+reset+edit+commit+push, 10 runs)`);
  console.log('scenario                                         p50 ms   p95 ms  floor p50   ratio  commits/release');
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(47)} ${r.p50.toFixed(0).padStart(8)} ${r.p95.toFixed(0).padStart(8)} ${r.floor50.toFixed(0).padStart(10)} ${(r.p50 / r.floor50).toFixed(2).padStart(7)} ${r.commitsPerRelease.toFixed(2).padStart(16)}`,
    );
  }
  console.log(`Peak RSS of the service (server + syncer): ${peakRss.toFixed(0)} MB`);
  const overhead = tracing.on / tracing.off - 1;
  console.log(
    `Single image with tracing exported over OTLP: p50 ${tracing.on.toFixed(0)} ms, without: ${tracing.off.toFixed(0)} ms (${RUNS * 2} releases each, alternating; ${tracing.spans} OTLP export requests received): overhead ${(overhead * 100).toFixed(1)}%`,
  );
  const single = rows[0]!;
  const big = rows[3]!;
  const checks = [
    ['single image p50 within 1.5x the floor (quiet window 0)', single.p50 <= 1.5 * single.floor50, `${(single.p50 / single.floor50).toFixed(2)}x`],
    ['batch of 1000 images in one commit', big.commitsPerRelease === 1, `${big.commitsPerRelease} commits per release`],
    ['batch of 1000 images p50 under 3 s', big.p50 < 3000, `${big.p50.toFixed(0)} ms`],
    ['every release exactly one commit', rows.every((r) => r.commitsPerRelease === 1), rows.map((r) => r.commitsPerRelease).join(', ')],
    ['service peak RSS under 200 MB', peakRss < 200, `${peakRss.toFixed(0)} MB`],
    ['tracing overhead on a single image under 5%', overhead < 0.05 && tracing.spans > 0, `${(overhead * 100).toFixed(1)}%`],
  ] as const;
  for (const [name, ok, value] of checks) console.log(`${ok ? 'PASS' : 'MISS'}  ${name}: ${value}`);
  return checks.every(([, ok]) => ok);
}
