// The mirror step of a sync, end to end: real registries (Debian's docker-registry)
// as source and mirror, images pushed with skopeo, a real git server and SQLite.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../shared/registry/client.ts';
import { git, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { buildImage, pushImage, skopeoDigest, type TestImage } from '../helpers/oci-image.ts';
import { REGISTRY_PASSWORD, REGISTRY_USER, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';

let server: GitServer;
const registries: TestRegistry[] = [];
beforeAll(async () => {
  server = await startGitServer();
});
afterAll(async () => {
  await server.close();
  await Promise.all(registries.map((r) => r.close()));
});

async function registry(auth: TestRegistry['auth']): Promise<TestRegistry> {
  const r = await startRegistry(auth);
  registries.push(r);
  return r;
}

const registryYaml = (r: TestRegistry, password = '${REGISTRY_PASSWORD}') =>
  `  - { host: "${r.host}", insecure: true${r.auth === 'none' ? '' : `, username: ${REGISTRY_USER}, password: "${password}"`} }`;

/** A sync fixture whose repository deploys `image` (and names its mirror copy in a second file). */
function mirrorFixture(opts: { source: TestRegistry; mirror: TestRegistry; mode: 'verify' | 'copy'; image: string; mirrorSettings?: string; repository?: string; password?: string; extraFiles?: Record<string, string> }) {
  return syncFixture(server, {
    files: {
      'apps/app.yaml': `spec:\n  containers:\n    - image: ${opts.image}:0.1.0 # ${KEYWORD}\n`,
      ...opts.extraFiles,
    },
    ...(opts.repository ? { repository: opts.repository } : {}),
    top: `registries:
${registryYaml(opts.source)}
${registryYaml(opts.mirror, opts.password)}
mirror: { registry: "${opts.mirror.host}/mirror", mode: ${opts.mode}, retryInitial: 10ms, retryMax: 50ms${opts.mirrorSettings ? `, ${opts.mirrorSettings}` : ''} }`,
    env: { REGISTRY_PASSWORD },
  });
}

const mirrorRepo = (source: TestRegistry, path: string) => `mirror/${source.host.replace(':', '_')}/${path}`;
const client = (r: TestRegistry) =>
  new RegistryClient({ host: r.host, insecure: true, ...(r.auth === 'none' ? {} : { credentials: { username: REGISTRY_USER, password: REGISTRY_PASSWORD } }) });
const blobTransfers = (lines: string[]) => lines.filter((l) => /^GET \S+\/blobs\/sha256:/.test(l) || /^(POST|PUT|PATCH) \S+\/blobs\/uploads\//.test(l));

describe('mirror: verify', () => {
  it('holds a target as awaiting_mirror until the mirror has the image, then commits with its digest', async () => {
    const [source, mirror] = await Promise.all([registry('none'), registry('token')]);
    const image = `${source.host}/acme/verified`;
    const f = mirrorFixture({ source, mirror, mode: 'verify', image });
    await f.want(f.request(image, '1.0.0'));

    const [first] = await f.loop.once();
    expect(first!.commits).toEqual([]);
    expect(f.target(image)).toMatchObject({ status: 'awaiting_mirror', lastErrorCode: null });
    expect(f.log()).toEqual(['initial']);
    // Looking again before it appears changes nothing and adds no second awaiting event.
    await f.loop.once();

    const built = buildImage('1.0.0', 'verify me');
    await pushImage(built, mirror, mirrorRepo(source, 'acme/verified'), '1.0.0');
    const [second] = await f.loop.once();
    expect(second!.commits).toHaveLength(1);
    expect(f.show('apps/app.yaml')).toContain(`image: ${image}:1.0.0 # ${KEYWORD}`);
    const target = f.target(image);
    expect(target).toMatchObject({ status: 'synced', appliedTag: '1.0.0', appliedDigest: built.digest });
    const events = f.store.listEvents(target.id);
    expect(events.map((e) => e.type)).toEqual(['requested', 'awaiting_mirror', 'mirror_confirmed', 'committed', 'pushed', 'synced']);
    expect(events[1]!.message).toContain(`the mirror does not hold ${mirror.host}/${mirrorRepo(source, 'acme/verified')}:1.0.0 yet`);
    expect(events[2]).toMatchObject({ digest: built.digest, details: { mirror: `${mirror.host}/${mirrorRepo(source, 'acme/verified')}:1.0.0` } });
  });

  it('confirms the mirror once per requested tag: a sync retried after a rejected push adds no second mirror_confirmed', async () => {
    const [source, mirror] = await Promise.all([registry('none'), registry('none')]);
    const image = `${source.host}/acme/retried`;
    const built = buildImage('1.0.0', 'confirm me once');
    await pushImage(built, mirror, mirrorRepo(source, 'acme/retried'), '1.0.0');
    const f = mirrorFixture({ source, mirror, mode: 'verify', image });
    // The git server refuses pushes (a real pre-receive hook) during the first sync, so it ends in a retry.
    const hook = path.join(f.bare, 'hooks', 'pre-receive');
    writeFileSync(hook, '#!/bin/sh\necho "maintenance window" >&2\nexit 1\n', { mode: 0o755 });
    await f.want(f.request(image, '1.0.0'));

    await f.loop.once();
    expect(f.target(image).status).toBe('pending');
    rmSync(hook);
    await new Promise((r) => setTimeout(r, 60)); // past retryMax (50ms)
    await f.loop.once();
    const target = f.target(image);
    expect(target).toMatchObject({ status: 'synced', appliedDigest: built.digest });
    const types = f.store.listEvents(target.id).map((e) => e.type);
    expect(types.filter((t) => t === 'mirror_confirmed')).toHaveLength(1);
    expect(types.at(-1)).toBe('synced');

    // A new request for the same tag is a new look: confirmed again, once.
    await f.want(f.request(image, '1.0.0', { digest: built.digest }));
    await f.loop.once();
    expect(f.store.listEvents(target.id).filter((e) => e.type === 'mirror_confirmed')).toHaveLength(2);
  });

  it('fails MIRROR_TIMEOUT once mirror.timeout has passed, naming what is missing', async () => {
    const [source, mirror] = await Promise.all([registry('none'), registry('none')]);
    const image = `${source.host}/acme/never`;
    const f = mirrorFixture({ source, mirror, mode: 'verify', image, mirrorSettings: 'timeout: 300ms' });
    await f.want(f.request(image, '1.0.0'));
    await f.loop.once();
    expect(f.target(image).status).toBe('awaiting_mirror');
    await new Promise((r) => setTimeout(r, 350));
    await f.loop.once();
    expect(f.target(image)).toMatchObject({
      status: 'failed',
      lastErrorCode: 'MIRROR_TIMEOUT',
      lastErrorMessage: expect.stringContaining(`the mirror still does not hold ${mirror.host}/${mirrorRepo(source, 'acme/never')}:1.0.0 300ms after the request`),
    });
    expect(f.log()).toEqual(['initial']);
  });
});

describe('mirror: copy', () => {
  let source: TestRegistry;
  let mirror: TestRegistry;
  beforeAll(async () => {
    [source, mirror] = await Promise.all([registry('token'), registry('basic')]);
  });

  it('copies a two-platform image with its digest before the commit; the next sync of that tag copies nothing', async () => {
    const image = `${source.host}/acme/app`;
    const built = buildImage('1.0.0', 'copy me');
    await pushImage(built, source, 'acme/app', '1.0.0');
    const mirrored = `${mirror.host}/${mirrorRepo(source, 'acme/app')}`;
    const f = mirrorFixture({
      source,
      mirror,
      mode: 'copy',
      image,
      // A line that names the mirror copy is the same image.
      extraFiles: { 'apps/from-mirror.yaml': `image: ${mirrored}:0.1.0 # ${KEYWORD}\n` },
    });
    await f.want(f.request(image, '1.0.0'));
    const [result] = await f.loop.once();
    expect(result!.commits).toHaveLength(1);

    // Independent checks of the copy: skopeo, and a HEAD from a fresh client.
    expect(await skopeoDigest(mirror, `${mirrorRepo(source, 'acme/app')}:1.0.0`)).toBe(built.digest);
    expect((await client(mirror).headManifest(mirrorRepo(source, 'acme/app'), '1.0.0'))?.digest).toBe(built.digest);
    expect(f.show('apps/app.yaml')).toContain(`image: ${image}:1.0.0 # ${KEYWORD}`);
    expect(f.show('apps/from-mirror.yaml')).toBe(`image: ${mirrored}:1.0.0 # ${KEYWORD}\n`);

    const target = f.target(image);
    expect(target).toMatchObject({ status: 'synced', appliedDigest: built.digest });
    const events = f.store.listEvents(target.id);
    expect(events.map((e) => e.type)).toEqual(['requested', 'mirrored', 'committed', 'pushed', 'synced']);
    expect(events[1]).toMatchObject({ digest: built.digest, details: { mirror: `${mirrored}:1.0.0`, bytes: built.bytes, blobsCopied: 4, manifests: 3 } });

    // Another target wants the same tag: confirmed, not copied again.
    const sourceBefore = (await source.requests()).length;
    const mirrorBefore = (await mirror.requests()).length;
    await f.want(f.request(image, '1.0.0', { keyword: 'image-automation-staging' }));
    await f.loop.once();
    const staging = f.store.listTargets({ image, keyword: 'image-automation-staging', limit: 1 }, null).targets[0]!;
    expect(f.store.listEvents(staging.id).map((e) => e.type)).toContain('mirror_confirmed');
    expect(blobTransfers((await source.requests()).slice(sourceBefore))).toEqual([]);
    expect(blobTransfers((await mirror.requests()).slice(mirrorBefore))).toEqual([]);
  });

  it('refuses a tag that was moved in the source after it was mirrored (TAG_MUTATED), leaving the mirror copy alone', async () => {
    const image = `${source.host}/acme/moving`;
    const first = buildImage('1.0.0', 'the original');
    await pushImage(first, source, 'acme/moving', '1.0.0');
    const f = mirrorFixture({ source, mirror, mode: 'copy', image });
    await f.want(f.request(image, '1.0.0'));
    await f.loop.once();
    expect(f.target(image).status).toBe('synced');

    const second = buildImage('1.0.0', 'pushed over the same tag');
    await pushImage(second, source, 'acme/moving', '1.0.0');
    await f.want(f.request(image, '1.0.0', { keyword: 'image-automation-staging' }));
    await f.loop.once();
    const staging = f.store.listTargets({ image, keyword: 'image-automation-staging', limit: 1 }, null).targets[0]!;
    expect(staging).toMatchObject({ status: 'failed', lastErrorCode: 'TAG_MUTATED' });
    expect(staging.lastErrorMessage).toContain(`holds ${mirror.host}/${mirrorRepo(source, 'acme/moving')}:1.0.0 as ${first.digest}, but ${image}:1.0.0 is now ${second.digest}`);
    expect(await skopeoDigest(mirror, `${mirrorRepo(source, 'acme/moving')}:1.0.0`)).toBe(first.digest);
  });

  it('refuses a digest in the request that the source tag does not have', async () => {
    const image = `${source.host}/acme/pinned`;
    const built = buildImage('1.0.0', 'pinned');
    await pushImage(built, source, 'acme/pinned', '1.0.0');
    const f = mirrorFixture({ source, mirror, mode: 'copy', image });
    await f.want(f.request(image, '1.0.0', { digest: `sha256:${'0'.repeat(64)}` }));
    await f.loop.once();
    expect(f.target(image)).toMatchObject({ status: 'failed', lastErrorCode: 'TAG_MUTATED', lastErrorMessage: expect.stringContaining(`holds 1.0.0 as ${built.digest}, but the request named sha256:000`) });
  });

  it('writes image:tag@digest with pinDigest, using the digest it confirmed', async () => {
    const image = `${source.host}/acme/pin`;
    const built = buildImage('2.0.0', 'pin me');
    await pushImage(built, source, 'acme/pin', '2.0.0');
    const f = mirrorFixture({ source, mirror, mode: 'copy', image, repository: '    pinDigest: true' });
    await f.want(f.request(image, '2.0.0'));
    await f.loop.once();
    expect(f.show('apps/app.yaml')).toContain(`image: ${image}:2.0.0@${built.digest} # ${KEYWORD}`);
  });

  it('keeps a target pending with the registry named, and no secret anywhere, when the mirror refuses the credentials', async () => {
    const image = `${source.host}/acme/app`;
    const f = mirrorFixture({ source, mirror, mode: 'copy', image, password: 'wrong-mirror-password-51c' });
    await f.want(f.request(image, '1.0.0'));
    await f.loop.once();
    const target = f.target(image);
    expect(target).toMatchObject({ status: 'pending', lastErrorCode: 'REGISTRY_AUTH_FAILED' });
    expect(target.lastErrorMessage).toContain(`registry ${mirror.host} refused the credentials of user "${REGISTRY_USER}"`);
    const everything = JSON.stringify([target, f.store.listEvents(target.id), f.logs]);
    expect(everything).not.toContain('wrong-mirror-password-51c');
    expect(everything).not.toContain(REGISTRY_PASSWORD);
    expect(everything).not.toMatch(/Basic [A-Za-z0-9+/=]{8}|Bearer [A-Za-z0-9._-]{8}/);
    expect(f.log()).toEqual(['initial']);
  });
});

describe('mirror: outages and clean-up', () => {
  it('leaves targets pending while the mirror registry is down, and lands them once it is back', async () => {
    const [source, mirror] = await Promise.all([registry('none'), registry('none')]);
    const image = `${source.host}/acme/patient`;
    const built = buildImage('3.0.0', 'patient');
    await pushImage(built, source, 'acme/patient', '3.0.0');
    const f = mirrorFixture({ source, mirror, mode: 'copy', image });
    await mirror.stop();
    await f.want(f.request(image, '3.0.0'));
    await f.loop.once();
    expect(f.target(image)).toMatchObject({ status: 'pending', lastErrorCode: 'REGISTRY_UNAVAILABLE', lastErrorMessage: expect.stringContaining(mirror.host) });
    expect(f.log()).toEqual(['initial']);

    await mirror.start();
    await f.loop.once();
    expect(f.target(image)).toMatchObject({ status: 'synced', appliedDigest: built.digest, lastErrorCode: null });
    expect(f.show('apps/app.yaml')).toContain(`${image}:3.0.0`);
  });

  it('keep: deletes old mirrored tags no target wants, never one a target wants or whose digest a kept tag shares', async () => {
    const [source, mirror] = await Promise.all([registry('none'), registry('token')]);
    const image = `${source.host}/acme/kept`;
    const repo = mirrorRepo(source, 'acme/kept');
    const images: Record<string, TestImage> = {};
    for (const tag of ['0.9', '1.0', '2.0', '3.0']) {
      images[tag] = buildImage(tag, `kept ${tag}`, { single: true, platforms: ['linux/amd64'] });
      await pushImage(images[tag]!, source, 'acme/kept', tag);
    }
    const f = mirrorFixture({
      source,
      mirror,
      mode: 'copy',
      image,
      mirrorSettings: 'keep: 1',
      extraFiles: { 'apps/staging.yaml': `image: ${image}:0.1.0 # image-automation-staging\n` },
    });
    const staging = (tag: string) => f.request(image, tag, { keyword: 'image-automation-staging' });
    const tags = async () => (await client(mirror).listTags(repo)).sort();

    await f.want(staging('0.9'));
    await f.loop.once();
    await f.want(staging('1.0'));
    await f.loop.once();
    // 0.9: older than the newest one, wanted by no target: deleted.
    expect(await tags()).toEqual(['1.0']);

    // Someone else tags the same image in the mirror: its digest must survive.
    await pushImage(images['1.0']!, mirror, repo, '1.0-alias');
    await f.want(f.request(image, '2.0'));
    await f.loop.once();
    // 1.0 is beyond the newest one, but staging runs it.
    expect(await tags()).toEqual(['1.0', '1.0-alias', '2.0']);

    await f.want(staging('3.0'));
    await f.loop.once();
    // 2.0: prod runs it. 1.0: no target wants it any more, but 1.0-alias points at its digest.
    expect(await tags()).toEqual(['1.0', '1.0-alias', '2.0', '3.0']);
    expect(f.store.db.prepare('SELECT tag FROM mirror_tags WHERE repository = ? ORDER BY tag').pluck().all(repo)).toEqual(['1.0', '2.0', '3.0']);
    expect(git(f.bare, 'show', 'main:apps/staging.yaml')).toContain(`${image}:3.0 # image-automation-staging`);
  });
});
