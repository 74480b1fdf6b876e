// The OCI distribution client against real registries (Debian's docker-registry):
// anonymous, htpasswd Basic and Bearer token auth; images built as OCI layouts and
// pushed with skopeo; what went over the wire read from the registries' access logs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient, RegistryError, MANIFEST_ACCEPT } from '../../shared/registry/client.ts';
import { copyImage } from '../../shared/registry/copy.ts';
import { buildImage, OCI_INDEX, pushImage, skopeoDigest } from '../helpers/oci-image.ts';
import { REGISTRY_PASSWORD, REGISTRY_USER, startProxy, startRegistry, type TestRegistry } from '../helpers/registry.ts';

const NAME = 'gcr.io/acme/app';
const MIRRORED = `mirror/${NAME}`;

function clientFor(registry: TestRegistry | { host: string; auth: TestRegistry['auth'] }, password = REGISTRY_PASSWORD): RegistryClient {
  return new RegistryClient({
    host: registry.host,
    insecure: true,
    ...(registry.auth === 'none' ? {} : { credentials: { username: REGISTRY_USER, password } }),
    retryInitialMs: 10,
    retryMaxMs: 50,
  });
}

const blobTransfers = (lines: string[]) => lines.filter((l) => /^GET \S+\/blobs\/sha256:/.test(l) || /^(POST|PUT|PATCH) \S+\/blobs\/uploads\//.test(l));

let open: TestRegistry[] = [];
afterAll(async () => {
  await Promise.all(open.map((r) => r.close()));
});
async function registry(auth: TestRegistry['auth']): Promise<TestRegistry> {
  const r = await startRegistry(auth);
  open.push(r);
  return r;
}

describe('copying an image between registries', () => {
  let basic: TestRegistry;
  let token: TestRegistry;
  let anonymous: TestRegistry;
  beforeAll(async () => {
    [basic, token, anonymous] = await Promise.all([registry('basic'), registry('token'), registry('none')]);
  });

  it('copies a two-platform index from a Basic-auth source to a token-auth mirror with the same digest, then transfers no blob the second time', async () => {
    const image = buildImage('1.0.0', 'two platforms');
    await pushImage(image, basic, NAME, '1.0.0');
    const source = clientFor(basic);
    const mirror = clientFor(token);

    const head = await source.headManifest(NAME, '1.0.0');
    expect(head).toMatchObject({ digest: image.digest, mediaType: OCI_INDEX });
    const result = await copyImage(source, NAME, mirror, MIRRORED, '1.0.0', head!.digest);
    expect(result).toMatchObject({ digest: image.digest, blobsCopied: 4, manifestsCopied: 3 });
    expect(result.bytes).toBe(image.bytes);
    // One token per scope, shared by the requests that ran at once: not one per request.
    expect(token.tokenRequests).toEqual([`repository:${MIRRORED}:pull`, `repository:${MIRRORED}:pull,push`]);

    // Independent checks: skopeo, and a fresh client's HEAD.
    expect(await skopeoDigest(token, `${MIRRORED}:1.0.0`)).toBe(image.digest);
    expect((await clientFor(token).headManifest(MIRRORED, '1.0.0'))?.digest).toBe(image.digest);
    // Both platforms are there, by digest.
    const index = JSON.parse((await mirror.getManifest(MIRRORED, image.digest))!.bytes.toString()) as { manifests: Array<{ digest: string }> };
    for (const child of index.manifests) expect(await mirror.headManifest(MIRRORED, child.digest)).not.toBeNull();

    const sourceBefore = (await basic.requests()).length;
    const mirrorBefore = (await token.requests()).length;
    const again = await copyImage(source, NAME, mirror, MIRRORED, '1.0.0', head!.digest);
    expect(again).toMatchObject({ blobsCopied: 0, blobsMounted: 0, manifestsCopied: 1 });
    expect(blobTransfers((await basic.requests()).slice(sourceBefore))).toEqual([]);
    expect(blobTransfers((await token.requests()).slice(mirrorBefore))).toEqual([]);
  });

  it('mounts blobs the mirror holds in another repository instead of copying them', async () => {
    const image = buildImage('2.0.0', 'shared layers');
    await pushImage(image, anonymous, NAME, '2.0.0');
    const source = clientFor(anonymous);
    const mirror = clientFor(basic);
    const where = new Map<string, string>();
    const options = { mountSource: (d: string) => where.get(d), onBlob: (d: string, repo: string) => void where.set(d, repo) };
    const digest = (await source.headManifest(NAME, '2.0.0'))!.digest;
    await copyImage(source, NAME, mirror, 'mirror/first', '2.0.0', digest, options);

    const before = (await anonymous.requests()).length;
    const second = await copyImage(source, NAME, mirror, 'mirror/second', '2.0.0', digest, options);
    expect(second).toMatchObject({ digest: image.digest, blobsCopied: 0, blobsMounted: 4 });
    expect(blobTransfers((await anonymous.requests()).slice(before))).toEqual([]);
    expect((await basic.requests()).filter((l) => l.includes('mount=') && l.endsWith(' 201'))).toHaveLength(4);
    expect(await skopeoDigest(basic, 'mirror/second:2.0.0')).toBe(image.digest);
  });

  it('uploads the blob when a mount is refused (the named repository does not hold it)', async () => {
    const image = buildImage('2.1.0', 'mount refused', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, anonymous, NAME, '2.1.0');
    const result = await copyImage(clientFor(anonymous), NAME, clientFor(basic), 'mirror/unmounted', '2.1.0', image.digest, { mountSource: () => 'mirror/does-not-exist' });
    expect(result).toMatchObject({ blobsCopied: 2, blobsMounted: 0 });
    expect((await basic.requests()).filter((l) => l.includes('from=mirror%2Fdoes-not-exist') && l.endsWith(' 202'))).toHaveLength(2);
    expect(await skopeoDigest(basic, 'mirror/unmounted:2.1.0')).toBe(image.digest);
  });

  it('uploads in chunks when the registry asks for them', async () => {
    const image = buildImage('3.0.0', 'chunked', { single: true, platforms: ['linux/amd64'], layerBytes: 6 * 1024 * 1024 + 123 });
    await pushImage(image, anonymous, NAME, '3.0.0');
    // The registry never asks; a proxy in front of it adds the header a registry that wants chunks sends.
    const proxy = await startProxy(token, {
      responseHeaders: (req, headers) => {
        if (req.method === 'POST' && req.url?.endsWith('/blobs/uploads/')) headers['oci-chunk-min-length'] = String(5 * 1024 * 1024);
      },
    });
    try {
      const mirror = clientFor({ host: proxy.host, auth: 'token' });
      const result = await copyImage(clientFor(anonymous), NAME, mirror, MIRRORED, '3.0.0', image.digest);
      expect(result.digest).toBe(image.digest);
      const patches = (await token.requests()).filter((l) => l.startsWith('PATCH '));
      expect(patches).toHaveLength(2); // the 6 MiB layer in a 5 MiB and a 1 MiB chunk; the small config in one PUT
      expect(await skopeoDigest(token, `${MIRRORED}:3.0.0`)).toBe(image.digest);
    } finally {
      await proxy.close();
    }
  });

  it('asks for a new token when the registry answers insufficient_scope', async () => {
    const image = buildImage('4.0.0', 'stingy tokens', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, anonymous, NAME, '4.0.0');
    const mirror = clientFor(token);
    token.tokenControl.pullOnlyTokens = 1;
    const before = token.tokenRequests.length;
    await copyImage(clientFor(anonymous), NAME, mirror, 'mirror/stingy', '4.0.0', image.digest);
    expect(await skopeoDigest(token, 'mirror/stingy:4.0.0')).toBe(image.digest);
    const asked = token.tokenRequests.slice(before);
    expect(asked.filter((s) => s.includes('repository:mirror/stingy:pull,push'))).toHaveLength(2);
  });
});

describe('what the client refuses and survives', () => {
  it('names the registry and the user, never the password, when credentials are wrong (Basic and token)', async () => {
    for (const auth of ['basic', 'token'] as const) {
      const r = await registry(auth);
      const client = clientFor(r, 'wrong-password-7f3a');
      const error = await client.headManifest(NAME, '1.0.0').then(() => undefined, (err: unknown) => err);
      expect(error).toBeInstanceOf(RegistryError);
      expect((error as RegistryError).kind).toBe('auth');
      expect((error as RegistryError).message).toContain(r.host);
      expect((error as RegistryError).message).toContain(`user "${REGISTRY_USER}"`);
      expect(JSON.stringify({ ...(error as object), message: (error as Error).message })).not.toMatch(/wrong-password|7f3a|Basic |Bearer /);
    }
  });

  it('says anonymous access was refused when no credentials are configured', async () => {
    const r = await registry('basic');
    const error = await clientFor({ host: r.host, auth: 'none' }).headManifest(NAME, '1.0.0').catch((err: RegistryError) => err);
    expect(error).toMatchObject({ kind: 'auth', message: expect.stringContaining('no credentials are configured') });
  });

  it('retries 503 and 429 (honouring Retry-After), then reports the registry unavailable', async () => {
    const r = await registry('none');
    const image = buildImage('5.0.0', 'flaky', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, r, NAME, '5.0.0');
    let failures = 2;
    const proxy = await startProxy(r, {
      intercept: (req, res) => {
        if (req.method !== 'HEAD' || failures <= 0) return false;
        failures--;
        res.writeHead(failures === 1 ? 503 : 429, { 'retry-after': '0' }).end();
        return true;
      },
    });
    try {
      const client = clientFor({ host: proxy.host, auth: 'none' });
      expect((await client.headManifest(NAME, '5.0.0'))?.digest).toBe(image.digest);
      expect(proxy.seen.filter((s) => s.method === 'HEAD')).toHaveLength(3);

      failures = 100;
      const error = await client.headManifest(NAME, '5.0.0').catch((err: RegistryError) => err);
      expect(error).toMatchObject({ kind: 'unavailable', message: expect.stringContaining(`registry ${proxy.host} is unavailable`) });
    } finally {
      await proxy.close();
    }
    await r.stop();
    const down = await clientFor(r).headManifest(NAME, '5.0.0').catch((err: RegistryError) => err);
    expect(down).toMatchObject({ kind: 'unavailable', message: expect.stringContaining(r.host) });
  });

  it('abandons a request that makes no progress for the timeout, and says so', async () => {
    const r = await registry('none');
    const proxy = await startProxy(r, { intercept: () => true }); // takes the request, never answers
    try {
      const client = new RegistryClient({ host: proxy.host, insecure: true, timeoutMs: 150, attempts: 2, retryInitialMs: 10, retryMaxMs: 20 });
      const error = await client.headManifest(NAME, '1.0.0').catch((err: RegistryError) => err);
      expect(error).toMatchObject({ kind: 'unavailable', message: expect.stringContaining(`registry ${proxy.host} did not answer for manifest ${NAME}:1.0.0: no progress for 150 ms`) });
      expect(proxy.seen).toHaveLength(2);
    } finally {
      await proxy.close();
    }
  });

  it('follows a blob redirect to another origin without sending the credentials there', async () => {
    const r = await registry('basic');
    const image = buildImage('6.0.0', 'redirected', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, r, NAME, '6.0.0');
    // "Storage": a second proxy that serves blobs without auth (as a CDN with a signed URL would).
    const storage = await startProxy(r, {
      intercept: (req, res) => {
        if (!req.url?.includes('/blobs/')) return false;
        // The registry itself needs credentials; the test adds them here, as a signed URL would stand in for them.
        void fetch(`http://${r.host}${req.url}`, { headers: { authorization: `Basic ${Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64')}` } })
          .then(async (answer) => res.writeHead(answer.status).end(Buffer.from(await answer.arrayBuffer())));
        return true;
      },
    });
    const front = await startProxy(r, {
      intercept: (req, res) => {
        if (req.method !== 'GET' || !req.url?.includes('/blobs/sha256:') || !req.headers.authorization) return false;
        res.writeHead(307, { location: `http://${storage.host}${req.url}?signature=abc` }).end();
        return true;
      },
    });
    try {
      const mirror = await registry('none');
      const result = await copyImage(clientFor({ host: front.host, auth: 'basic' }), NAME, clientFor(mirror), MIRRORED, '6.0.0', image.digest);
      expect(result.blobsCopied).toBe(2);
      expect(storage.seen.length).toBe(2);
      expect(storage.seen.every((s) => s.authorization === undefined)).toBe(true);
      expect(await skopeoDigest(mirror, `${MIRRORED}:6.0.0`)).toBe(image.digest);
    } finally {
      await front.close();
      await storage.close();
    }
  });

  it('refuses a manifest whose bytes do not match the digest it was asked for', async () => {
    const r = await registry('none');
    const image = buildImage('7.0.0', 'tampered', { single: true, platforms: ['linux/amd64'] });
    await pushImage(image, r, NAME, '7.0.0');
    const proxy = await startProxy(r, {
      intercept: (req, res) => {
        if (!req.url?.includes('/manifests/')) return false;
        void fetch(`http://${r.host}${req.url}`, { method: req.method, headers: { accept: MANIFEST_ACCEPT } }).then(async (answer) => {
          const body = Buffer.from((await answer.text()).replace('"schemaVersion":2', '"schemaVersion": 2'));
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? '' }).end(req.method === 'HEAD' ? undefined : body);
        });
        return true;
      },
    });
    try {
      const error = await clientFor({ host: proxy.host, auth: 'none' }).getManifest(NAME, image.digest).catch((err: RegistryError) => err);
      expect(error).toMatchObject({ kind: 'invalid', message: expect.stringContaining(`not ${image.digest}`) });
    } finally {
      await proxy.close();
    }
  });

  it('lists tags across pages and deletes a manifest by digest (every tag on it goes)', async () => {
    const r = await registry('token');
    const one = buildImage('a', 'one', { single: true, platforms: ['linux/amd64'] });
    const two = buildImage('b', 'two', { single: true, platforms: ['linux/amd64'] });
    await pushImage(one, r, NAME, '1.0.0');
    await pushImage(one, r, NAME, '1.0.0-alias');
    await pushImage(two, r, NAME, '2.0.0');
    const client = clientFor(r);
    expect((await client.listTags(NAME, 2)).sort()).toEqual(['1.0.0', '1.0.0-alias', '2.0.0']);
    expect((await r.requests()).filter((l) => l.includes('/tags/list'))).toHaveLength(2);
    expect(await client.listTags('no/such/repository')).toEqual([]);
    expect(await client.deleteManifest(NAME, one.digest)).toBe(true);
    expect(await client.deleteManifest(NAME, one.digest)).toBe(false);
    expect((await client.listTags(NAME)).sort()).toEqual(['2.0.0']);
    expect(await client.headManifest(NAME, '1.0.0')).toBeNull();
  });
});
