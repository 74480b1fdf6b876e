// The whole service as an operator runs it: the real CLI processes, HTTP, the
// syncer and a real git server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { git, GIT_PASSWORD, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { postImages, startService, type Service } from '../helpers/cli.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';
import { TOKENS } from '../helpers/tokens.ts';

let server: GitServer;
const running: Service[] = [];
beforeAll(async () => {
  server = await startGitServer();
});
afterEach(() => {
  for (const s of running.splice(0)) s.child.kill('SIGKILL');
});
afterAll(async () => {
  await server.close();
});

async function start(configFile: string, command = 'serve', readyMessage?: string): Promise<Service> {
  const s = await startService(configFile, command, { GIT_PASSWORD }, readyMessage);
  running.push(s);
  return s;
}

const post = postImages;

async function waitForStatus(url: string, id: number, status: string): Promise<Record<string, unknown>> {
  for (;;) {
    const res = await fetch(`${url}/v1/images/${id}`, { headers: { Authorization: `Bearer ${TOKENS.ci}` } });
    const target = (await res.json()) as Record<string, unknown>;
    if (target.status === status) return target;
    await new Promise((r) => setTimeout(r, 25));
  }
}

const files = {
  'apps/api.yaml': `image: gcr.io/acme/api:1.0 # ${KEYWORD}\n`,
  'apps/web.yaml': `image: gcr.io/acme/web:1.0 # ${KEYWORD}\n`,
  'apps/job.yaml': `image: gcr.io/acme/job:1.0 # ${KEYWORD}\n`,
};
const update = (image: string, tag: string) => ({ image, tag, keyword: KEYWORD, repository: 'gitops' });

describe('image-updater serve', () => {
  it('turns a POST into a pushed commit; requests that arrive together share one commit', async () => {
    const f = syncFixture(server, { files, syncer: { quietWindow: '300ms' } });
    const service = await start(f.configFile);
    const responses = await Promise.all([
      post(service.url, update('gcr.io/acme/api', '2.0')),
      post(service.url, update('gcr.io/acme/web', '2.0')),
      post(service.url, update('gcr.io/acme/job', '2.0')),
    ]);
    const ids = await Promise.all(responses.map(async (r) => ((await r.json()) as { target: { id: number } }).target.id));
    const synced = await Promise.all(ids.map((id) => waitForStatus(service.url, id, 'synced')));
    const sha = git(f.bare, 'rev-parse', 'main').trim();
    expect(synced.map((t) => (t.applied as { commit: string }).commit)).toEqual([sha, sha, sha]);
    expect(f.log()).toEqual(['Update 3 images (image-automation-prod)', 'initial']);
  });

  it('after kill -9 between the push and its record, restarts to synced with still exactly one commit', async () => {
    const f = syncFixture(server, { files });
    let service = await start(f.configFile);
    // The moment the push has updated the remote, before the syncer hears back: kill it.
    server.afterNextPush(() => service.child.kill('SIGKILL'));
    const res = await post(service.url, update('gcr.io/acme/api', '2.0'));
    const { target } = (await res.json()) as { target: { id: number } };
    expect((await service.exited).signal).toBe('SIGKILL');
    expect(f.log()).toEqual(['Update gcr.io/acme/api to 2.0 (image-automation-prod)', 'initial']);
    expect(f.store.db.prepare('SELECT status FROM targets WHERE id = ?').pluck().get(target.id)).toBe('pending');

    service = await start(f.configFile);
    const synced = await waitForStatus(service.url, target.id, 'synced');
    expect((synced.applied as { commit: string }).commit).toBe(git(f.bare, 'rev-parse', 'main').trim());
    expect(f.log()).toEqual(['Update gcr.io/acme/api to 2.0 (image-automation-prod)', 'initial']);
  });

  it('on SIGTERM lets the sync in flight finish and record, then exits 0', async () => {
    const f = syncFixture(server, { files });
    const service = await start(f.configFile);
    // Hold the push, stop the service meanwhile, then let the push through.
    server.beforeNextPush(async () => {
      service.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
    });
    const res = await post(service.url, update('gcr.io/acme/job', '5.0'));
    const { target } = (await res.json()) as { target: { id: number } };
    expect(await service.exited).toEqual({ code: 0, signal: null });
    expect(f.store.db.prepare('SELECT status, applied_tag AS tag FROM targets WHERE id = ?').get(target.id)).toEqual({ status: 'synced', tag: '5.0' });
    expect(f.log()).toEqual(['Update gcr.io/acme/job to 5.0 (image-automation-prod)', 'initial']);
    expect(service.logs.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('runs as separate server and syncer processes sharing one database', async () => {
    const f = syncFixture(server, { files, syncer: { pollInterval: '200ms', metricsPort: '0' } });
    const api = await start(f.configFile, 'server');
    const syncer = await start(f.configFile, 'syncer', 'metrics listening');
    const res = await post(api.url, update('gcr.io/acme/web', '3.0'));
    const { target } = (await res.json()) as { target: { id: number } };
    await waitForStatus(api.url, target.id, 'synced');
    expect(f.show('apps/web.yaml')).toBe(`image: gcr.io/acme/web:3.0 # ${KEYWORD}\n`);
    // Each process serves its own metrics: requests from the server, sync outcomes from the syncer.
    expect(await (await fetch(`${api.url}/metrics`)).text()).toMatch(/image_updater_http_requests_total\{route="\/v1\/images",method="POST",status="202"\} 1/);
    const synced = await (await fetch(`${syncer.url}/metrics`)).text();
    expect(synced).toContain('image_updater_updates_total{result="synced",code="none"} 1');
    expect((await fetch(`${syncer.url}/v1/images`)).status).toBe(404);
  });
});
