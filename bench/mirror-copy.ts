// The mirror: (1) copying an image of 3 layers of 10 MB between two local
// registries (Debian's docker-registry), beside `skopeo copy --all` of the same
// image in the same run; (2) what the mirror step adds to a sync when the image
// is already mirrored (copy mode: a HEAD to the source and one to the mirror, in
// parallel; verify mode: one HEAD), with Bearer auth on the source and Basic on
// the mirror, as a long-running syncer sees them (tokens cached).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../shared/config-file.ts';
import { createLogger } from '../shared/log.ts';
import { RegistryClient } from '../shared/registry/client.ts';
import { copyImage } from '../shared/registry/copy.ts';
import { openStore } from '../shared/store.ts';
import { createSyncRecords, type DueTarget } from '../shared/sync-records.ts';
import { createMirror } from '../syncer/mirror.ts';
import { tempDir } from '../test/helpers/app.ts';
import { buildImage, pushImage } from '../test/helpers/oci-image.ts';
import { REGISTRY_PASSWORD, REGISTRY_USER, startRegistry, type TestRegistry } from '../test/helpers/registry.ts';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const STEP_RUNS = 200;

const median = (values: number[]) => percentile(values, 50);
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const clientFor = (r: TestRegistry) =>
  new RegistryClient({ host: r.host, insecure: true, ...(r.auth === 'none' ? {} : { credentials: { username: REGISTRY_USER, password: REGISTRY_PASSWORD } }) });

async function benchCopy(): Promise<boolean> {
  const source = await startRegistry('none');
  try {
    const image = buildImage('1.0.0', 'bench', { single: true, platforms: ['linux/amd64'], layers: 3, layerBytes: 10 * 1024 * 1024 });
    await pushImage(image, source, 'acme/big', '1.0.0');
    const mib = image.bytes / 1024 / 1024;
    console.log(`\nMirror copy: ${mib.toFixed(1)} MiB (3 layers of 10 MiB, a config, a manifest), loopback registries, ${RUNS} runs each`);

    const ours: number[] = [];
    const skopeo: number[] = [];
    async function copyOurs(mirror: TestRegistry, i: number) {
      // A fresh client: no token or connection kept from the run before.
      const t0 = performance.now();
      const result = await copyImage(clientFor(source), 'acme/big', clientFor(mirror), `ours/run-${i}`, '1.0.0', image.digest);
      ours.push(performance.now() - t0);
      if (result.digest !== image.digest || result.blobsCopied !== 4) throw new Error(`copy ${i} went wrong: ${JSON.stringify(result)}`);
    }
    async function copySkopeo(mirror: TestRegistry, i: number) {
      const t0 = performance.now();
      await run('skopeo', ['copy', '--all', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${source.host}/acme/big:1.0.0`, `docker://${mirror.host}/skopeo/run-${i}:1.0.0`], {
        env: { ...process.env, HOME: tempDir('iu-bench-skopeo-') },
      });
      skopeo.push(performance.now() - t0);
    }
    for (let i = 0; i < RUNS; i++) {
      // A fresh mirror each run: skopeo's blob-info cache (system-wide for root) would otherwise
      // mount the layers from its earlier copies instead of copying them. Who goes first alternates.
      const mirror = await startRegistry('none');
      try {
        if (i % 2 === 0) {
          await copyOurs(mirror, i);
          await copySkopeo(mirror, i);
        } else {
          await copySkopeo(mirror, i);
          await copyOurs(mirror, i);
        }
        const mounts = (await mirror.requests()).filter((l) => l.includes('mount='));
        if (mounts.length > 0) throw new Error(`run ${i}: a blob was mounted, not copied: ${mounts.join(', ')}`);
      } finally {
        await mirror.close();
      }
    }
    const ratio = median(ours) / median(skopeo);
    const ok = ratio <= 1.3;
    console.log(`  image-updater copy   median ${median(ours).toFixed(0)} ms (${(mib / (median(ours) / 1000)).toFixed(0)} MiB/s)   runs ${ours.map((v) => v.toFixed(0)).join(' ')}`);
    console.log(`  skopeo copy --all    median ${median(skopeo).toFixed(0)} ms (${(mib / (median(skopeo) / 1000)).toFixed(0)} MiB/s)   runs ${skopeo.map((v) => v.toFixed(0)).join(' ')}`);
    console.log(`  ratio ${ratio.toFixed(2)}× skopeo (target ≤ 1.3×): ${ok ? 'met' : 'MISSED'}`);
    return ok;
  } finally {
    await source.close();
  }
}

async function benchStep(): Promise<boolean> {
  const [source, mirror] = await Promise.all([startRegistry('token'), startRegistry('basic')]);
  const dir = tempDir('iu-bench-mirror-');
  const store = openStore(path.join(dir, 'db.sqlite'), { synchronous: 'full' });
  try {
    const image = buildImage('1.0.0', 'step', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, source, 'acme/app', '1.0.0');
    const log = createLogger('warn');
    const results: Record<string, number[]> = {};
    for (const mode of ['copy', 'verify'] as const) {
      const config = parseConfig(
        `registries:
  - { host: "${source.host}", insecure: true, username: ${REGISTRY_USER}, password: "\${REGISTRY_PASSWORD}" }
  - { host: "${mirror.host}", insecure: true, username: ${REGISTRY_USER}, password: "\${REGISTRY_PASSWORD}" }
mirror: { registry: "${mirror.host}/mirror", mode: ${mode} }
repositories: [{ name: gitops, url: "https://git.example.com/gitops.git" }]
tokens: [{ name: ci, sha256: "${'a'.repeat(64)}", repositories: ["*"], images: ["**"], keywords: ["*"] }]
`,
        path.join(dir, 'config.yaml'),
        { REGISTRY_PASSWORD },
      );
      const step = createMirror({ config, records: createSyncRecords(store.db), log, now: Date.now });
      const target: DueTarget = {
        id: 1, generation: 1, repository: 'gitops', branch: 'main', image: `${source.host}/acme/app`, keyword: 'k',
        desiredTag: '1.0.0', desiredDigest: null, attempts: 0, requestedAt: Date.now(), requestTrace: null, status: 'pending', proposalUrl: null,
      };
      // The first call copies the image (copy mode) and fetches tokens; a running syncer has done both long before.
      const first = await step.confirm([target]);
      if (first.ready.length !== 1) throw new Error(`the mirror step did not confirm: ${JSON.stringify(first.results)}`);
      const times: number[] = [];
      for (let i = 0; i < STEP_RUNS; i++) {
        // Syncs of one image come seconds apart, not back to back: let the request budget refill.
        await new Promise((r) => setTimeout(r, 30));
        const t0 = performance.now();
        const outcome = await step.confirm([target]);
        times.push(performance.now() - t0);
        if (outcome.ready[0]?.confirmedDigest !== image.digest) throw new Error('the mirror step lost the image');
      }
      results[mode] = times;
    }
    // The floor: one bare HEAD to the mirror, as fetch alone does it.
    const floor: number[] = [];
    const basic = `Basic ${Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64')}`;
    for (let i = 0; i < STEP_RUNS; i++) {
      const t0 = performance.now();
      await fetch(`http://${mirror.host}/v2/mirror/${source.host.replace(':', '_')}/acme/app/manifests/1.0.0`, { method: 'HEAD', headers: { authorization: basic, accept: 'application/vnd.oci.image.manifest.v1+json' } });
      floor.push(performance.now() - t0);
    }
    console.log(`\nMirror step on an already-mirrored image (token-auth source, Basic-auth mirror, ${STEP_RUNS} syncs each, 30 ms apart)`);
    console.log(`  floor  p50 ${percentile(floor, 50).toFixed(2)} ms   (one bare HEAD to the mirror with fetch)`);
    for (const [mode, times] of Object.entries(results)) {
      console.log(`  ${mode.padEnd(6)} p50 ${percentile(times, 50).toFixed(2)} ms   p95 ${percentile(times, 95).toFixed(2)} ms   p99 ${percentile(times, 99).toFixed(2)} ms`);
    }
    const p50 = Math.max(...Object.values(results).map((t) => percentile(t, 50)));
    const ok = p50 < 15;
    console.log(`  worst p50 ${p50.toFixed(2)} ms (target < 15 ms): ${ok ? 'met' : 'MISSED'}`);
    return ok;
  } finally {
    await store.close();
    await Promise.all([source.close(), mirror.close()]);
  }
}

/** Runs both; returns false when a target is missed. */
export async function benchMirror(): Promise<boolean> {
  const copied = await benchCopy();
  const step = await benchStep();
  return copied && step;
}
