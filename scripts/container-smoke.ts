// The run half of scripts/container-smoke: given a built image (IMAGE), runs it as an operator
// would (read-only root file system, every capability dropped, a named volume for its data, its
// configuration mounted read-only, secrets in the environment) against a real git server and a
// real registry on this host, and proves: it serves as uid 10001; its HEALTHCHECK passes; a POST
// becomes a commit on the git server, with the image copied to the mirror first; SIGTERM stops it
// with exit status 0 within a few seconds; `image-updater backup` works inside it; and a restart on
// the same volume still knows the target.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../test/helpers/app.ts';
import { createRepository, git, GIT_PASSWORD, GIT_USER, startGitServer } from '../test/helpers/git-server.ts';
import { buildImage, pushImage, skopeoDigest } from '../test/helpers/oci-image.ts';
import { freePort, startRegistry } from '../test/helpers/registry.ts';

const run = promisify(execFile);
const image = process.env.IMAGE;
if (!image) throw new Error('IMAGE: the image to run (scripts/container-smoke sets it)');

/** The host's loopback as seen from a container on slirp4netns with allow_host_loopback. */
const HOST = '10.0.2.2';
const KEYWORD = 'image-automation-prod';
const STOP_LIMIT_MS = 5_000;

const podman = async (...args: string[]) => (await run('podman', args, { maxBuffer: 16 << 20 })).stdout.trim();
const step = (message: string) => process.stdout.write(`container-smoke: ${message}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch((err: Error & { fatal?: boolean }) => {
      if (err.fatal) throw err;
      return undefined;
    });
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

const gitServer = await startGitServer();
const registry = await startRegistry('none');
const registryHost = `${HOST}:${registry.host.split(':')[1]}`;
const sourceImage = `${registryHost}/acme/app`;
const bare = createRepository(gitServer, 'gitops', {
  'apps/app/deployment.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: { name: app }
spec:
  template:
    spec:
      containers:
        - name: app
          image: ${sourceImage}:1.0.0 # ${KEYWORD}
`,
  'README.md': 'gitops\n',
});
await pushImage(buildImage('1.0.1', 'app 1.0.1'), registry, 'acme/app', '1.0.1');

const token = randomBytes(24).toString('base64url');
const dir = tempDir('iu-smoke-');
const configFile = path.join(dir, 'config.yaml');
writeFileSync(
  configFile,
  `server: { host: 0.0.0.0, port: 8080 }
database: { path: /var/lib/image-updater/image-updater.db }
syncer: { workDir: /var/lib/image-updater/work }
repositories:
  - name: gitops
    url: http://${HOST}:${gitServer.port}/gitops.git
    branch: main
    auth: { username: "\${GIT_USERNAME}", password: "\${GIT_TOKEN}" }
registries:
  - host: "${registryHost}"
    insecure: true
mirror: { registry: "${registryHost}/mirror", mode: copy }
tokens:
  - name: ci
    sha256: ${createHash('sha256').update(token).digest('hex')}
    repositories: [gitops]
    images: ["${registryHost}/acme/**"]
    keywords: ["image-automation-*"]
`,
);

const name = `iu-smoke-${randomBytes(4).toString('hex')}`;
const volume = `${name}-data`;
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const runArgs = [
  '--name', name,
  '--network', 'slirp4netns:allow_host_loopback=true',
  '--publish', `127.0.0.1:${port}:8080`,
  '--read-only', '--tmpfs', '/tmp',
  '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
  '--volume', `${configFile}:/etc/image-updater/config.yaml:ro`,
  '--volume', `${volume}:/var/lib/image-updater`,
  '--env', `GIT_USERNAME=${GIT_USER}`, '--env', `GIT_TOKEN=${GIT_PASSWORD}`,
];

async function cleanup() {
  await podman('rm', '--force', '--time', '0', name).catch(() => undefined);
  await podman('volume', 'rm', '--force', volume).catch(() => undefined);
  await registry.close();
  await gitServer.close();
}

/** The container's output, stdout and stderr (podman replays each on its own stream). */
async function logs(): Promise<string> {
  const { stdout, stderr } = await run('podman', ['logs', name], { maxBuffer: 16 << 20 }).catch(() => ({ stdout: '', stderr: '(no log)' }));
  return `${stdout}${stderr}`;
}

async function healthy(): Promise<boolean> {
  return until('GET /healthz through the published port', 30_000, async () => {
    const state = await podman('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', name);
    if (state.startsWith('exited')) throw Object.assign(new Error(`the container ${state}`), { fatal: true });
    return (await fetch(`${url}/healthz`)).ok ? true : undefined;
  });
}

/** Sends SIGTERM (podman stop); fails unless the container exits 0 within STOP_LIMIT_MS. Returns how long it took. */
async function stop(when: string): Promise<number> {
  const started = performance.now();
  await podman('stop', '--time', '30', name);
  const ms = Math.round(performance.now() - started);
  const exitCode = Number(await podman('inspect', '--format', '{{.State.ExitCode}}', name));
  if (exitCode !== 0 || ms > STOP_LIMIT_MS) throw new Error(`SIGTERM ${when}: exit status ${exitCode} after ${ms} ms`);
  return ms;
}

try {
  await podman('volume', 'create', volume);
  await podman('run', '--detach', ...runArgs, image);
  await healthy();
  step(`${image} serves on ${url}`);

  const uid = await podman('exec', name, 'id', '-u');
  if (uid !== '10001') throw new Error(`the service runs as uid ${uid}, not 10001`);
  await podman('healthcheck', 'run', name).catch((err: Error) => {
    throw new Error(`HEALTHCHECK failed: ${err.message}`);
  });
  step('runs as uid 10001; HEALTHCHECK healthy');

  const posted = performance.now();
  const response = await fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ repository: 'gitops', image: sourceImage, tag: '1.0.1', keyword: KEYWORD }),
  });
  const accepted = (await response.json()) as { target?: { id: number } };
  if (response.status !== 202 || !accepted.target) throw new Error(`POST /v1/images: ${response.status} ${JSON.stringify(accepted)}`);
  const id = accepted.target.id;
  const get = async <T>(p: string) => (await (await fetch(`${url}${p}`, { headers: { Authorization: `Bearer ${token}` } })).json()) as T;
  type Target = { status: string; applied: { tag: string; commit: string } | null; lastError: unknown };
  let failed: string | undefined;
  const target = await until('the target to be synced', 60_000, async () => {
    const t = await get<Target>(`/v1/images/${id}`);
    if (t.status === 'failed') failed = `target failed: ${JSON.stringify(t.lastError)}`;
    return t.status === 'synced' || failed ? t : undefined;
  });
  const elapsed = performance.now() - posted;
  if (failed) throw new Error(failed);

  const head = git(bare, 'rev-parse', 'main').trim();
  const manifest = git(bare, 'show', 'main:apps/app/deployment.yaml');
  if (target.applied?.commit !== head) throw new Error(`the target names commit ${target.applied?.commit}, the branch is at ${head}`);
  if (!manifest.includes(`image: ${sourceImage}:1.0.1 # ${KEYWORD}`)) throw new Error(`the manifest was not updated:\n${manifest}`);
  const events = (await get<{ events: Array<{ type: string; details?: { mirror?: string } }> }>(`/v1/images/${id}/events`)).events;
  const mirrored = events.find((e) => e.type === 'mirrored')?.details?.mirror;
  if (!mirrored) throw new Error(`no "mirrored" event: ${events.map((e) => e.type).join(', ')}`);
  const [source, copy] = await Promise.all([skopeoDigest(registry, 'acme/app:1.0.1'), skopeoDigest(registry, mirrored.slice(registryHost.length + 1))]);
  if (source !== copy) throw new Error(`the mirror holds ${copy}, the source ${source}`);
  step(`POST → image copied to the mirror → commit ${head.slice(0, 12)} on the git server in ${Math.round(elapsed)} ms`);

  // The operator's backup, inside the running container, onto its volume.
  const backedUp = await podman('exec', name, 'image-updater', 'backup', '--to', '/var/lib/image-updater/backup.db');
  if (!/: \d+ bytes, 1 targets, \d+ events, migration \S+; integrity ok$/.test(backedUp)) throw new Error(`image-updater backup printed: ${backedUp}`);
  step(`image-updater backup inside the container: ${backedUp}`);

  step(`SIGTERM: exited 0 in ${await stop('while serving')} ms`);

  await podman('start', name);
  await healthy();
  const again = await get<Target>(`/v1/images/${id}`);
  if (again.status !== 'synced' || again.applied?.commit !== head) throw new Error(`after a restart the target reads ${JSON.stringify(again)}`);
  step(`restarted on the same volume: the target is still synced at ${head.slice(0, 12)}; stopped again in ${await stop('after the restart')} ms`);
  step('passed');
} catch (err) {
  process.stderr.write(`container-smoke: FAILED: ${(err as Error).message}\n`);
  process.stderr.write(`--- container log ---\n${await logs()}\n`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
