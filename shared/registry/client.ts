// An OCI distribution API client on Node's fetch: manifests (HEAD, GET, PUT,
// DELETE by digest), blobs (HEAD, streamed GET, monolithic or chunked upload,
// cross-repository mount), tags. Every request passes the registry's budget,
// authenticates (auth.ts), follows redirects without leaking credentials to
// another origin, retries 429/5xx with backoff, and times out when stalled.
import { createHash } from 'node:crypto';
import { backoffMs } from '../backoff.ts';
import { metrics } from '../metrics.ts';
import { basicHeader, createTokenCache, mergeScopes, parseChallenges, scopeKey, type Credentials } from './auth.ts';
import { createBudget, type Budget } from './budget.ts';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** All four, always: without the OCI types a registry may answer 404, without any it may down-convert. */
export const MANIFEST_ACCEPT = Object.values(MEDIA_TYPES).join(', ');

export const isIndex = (mediaType: string) => mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList;

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST.test(value);
}

/** The digest of some bytes with the algorithm of `like` (sha256 unless it says sha512). */
export function digestBytes(bytes: Uint8Array, like = 'sha256:'): string {
  const algorithm = like.startsWith('sha512:') ? 'sha512' : 'sha256';
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/**
 * Why a registry call failed: `unavailable` (network, timeout, 429, 5xx after retries),
 * `auth` (401/403: credentials refused or missing), `not_found`, `invalid` (a digest
 * that does not match, a manifest that cannot be read, another 4xx). Messages name the
 * registry and the operation, never a credential, token or upload URL.
 */
export class RegistryError extends Error {
  readonly kind: 'unavailable' | 'auth' | 'not_found' | 'invalid';
  readonly registry: string;
  readonly status: number | undefined;

  constructor(kind: RegistryError['kind'], registry: string, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.kind = kind;
    this.registry = registry;
    this.status = options?.status;
  }
}

export interface RegistryOptions {
  /** The registry as image references name it: `gcr.io`, `127.0.0.1:5000`, `docker.io`. */
  host: string;
  /** Plain HTTP instead of HTTPS (a registry on loopback or a private network). */
  insecure?: boolean;
  credentials?: Credentials;
  /** Requests in flight at once (default 8). */
  maxConcurrency?: number;
  /** Requests started per second (default 200, with a burst of as many). */
  maxRequestsPerSecond?: number;
  /** A request that sends or receives nothing for this long is aborted (default 30 s). */
  timeoutMs?: number;
  /** Attempts of a request that meets 429, 5xx or a network error (default 4). */
  attempts?: number;
  retryInitialMs?: number;
  retryMaxMs?: number;
  fetch?: typeof fetch;
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
}

export interface Manifest extends ManifestInfo {
  bytes: Buffer;
}

interface RequestSpec {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** A path under `/v2/`, or an absolute URL the registry gave (an upload location). */
  path: string;
  /** The token scopes this request needs, e.g. `repository:a/b:pull`. */
  scopes: string[];
  /** What the request is about, for error messages: `manifest a/b:1.0`. */
  what: string;
  headers?: Record<string, string>;
  body?: Buffer | ReadableStream<Uint8Array>;
  /** Statuses that are an answer rather than an error (404 is always returned when listed). */
  ok: number[];
  /** Keep the response body unread and streaming (its stall timer runs until it is consumed). */
  stream?: boolean;
}

interface Answer {
  status: number;
  /** The Authorization header the registry saw (to tell a refused token from one never sent). */
  sentAuthorization: string | undefined;
  headers: Headers;
  body: Buffer;
  stream: ReadableStream<Uint8Array> | null;
  url: URL;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const RETRIED = new Set([408, 429, 500, 502, 503, 504]);
const MAX_REDIRECTS = 5;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The API host of a registry name: Docker Hub's images are `docker.io/…`, its API is elsewhere. */
export function apiHost(host: string): string {
  return host === 'docker.io' ? 'registry-1.docker.io' : host;
}

/** Seconds or an HTTP date in `Retry-After`, as milliseconds from now (capped at 60 s). */
function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : undefined;
}

/** The first error the registry put in its body (`{"errors":[{"code","message"}]}`), if any. */
function registryReason(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = parsed.errors?.[0];
    if (first && typeof first.code === 'string') return `${first.code}${typeof first.message === 'string' && first.message ? `: ${first.message}` : ''}`.slice(0, 300);
  } catch {
    // Not the registry's JSON: say nothing rather than echo an HTML page.
  }
  return '';
}

/** The operation a request is, for the registry requests metric: `manifest_head`, `blob_get`, `upload_put`, `tags_get`. */
function operationOf(method: string, url: URL): string {
  const path = url.pathname;
  const kind = path.includes('/blobs/uploads/') ? 'upload' : path.includes('/manifests/') ? 'manifest' : path.includes('/blobs/') ? 'blob' : path.endsWith('/tags/list') ? 'tags' : 'other';
  return `${kind}_${method.toLowerCase()}`;
}

/** A stream that calls `tick` on every chunk and `end` when it is done or cancelled. */
function watched(stream: ReadableStream<Uint8Array>, tick: (chunk: Uint8Array) => void, end: () => void): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          end();
          controller.close();
        } else {
          tick(value);
          controller.enqueue(value);
        }
      } catch (err) {
        end();
        controller.error(err);
      }
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason);
    },
  });
}

export class RegistryClient {
  readonly host: string;
  private readonly base: string;
  private readonly credentials: Credentials | undefined;
  private readonly budget: Budget;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly fetch: typeof fetch;
  private readonly tokens = createTokenCache();
  /** Learnt from the first 401: how this registry wants to be authenticated. */
  private scheme: 'anonymous' | 'basic' | 'bearer' | undefined;
  private bearer: { realm: string; service: string | undefined } | undefined;

  constructor(options: RegistryOptions) {
    this.host = options.host;
    this.base = `${options.insecure ? 'http' : 'https'}://${apiHost(options.host)}/v2/`;
    this.credentials = options.credentials;
    this.budget = createBudget(options.maxConcurrency ?? 8, options.maxRequestsPerSecond ?? 200);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.attempts = options.attempts ?? 4;
    this.retryInitialMs = options.retryInitialMs ?? 200;
    this.retryMaxMs = options.retryMaxMs ?? 5_000;
    this.fetch = options.fetch ?? globalThis.fetch;
  }

  /** The manifest's digest, media type and size without its body; null when the registry has no such tag or digest. */
  async headManifest(repository: string, reference: string): Promise<ManifestInfo | null> {
    const res = await this.request({
      method: 'HEAD',
      path: `${repository}/manifests/${reference}`,
      scopes: [`repository:${repository}:pull`],
      what: `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      ok: [200, 404],
    });
    if (res.status === 404) return null;
    const digest = res.headers.get('docker-content-digest');
    if (!isDigest(digest)) {
      // Some registries leave the digest out of a HEAD: read the manifest instead.
      const manifest = await this.getManifest(repository, reference);
      return manifest && { digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.size };
    }
    return { digest, mediaType: res.headers.get('content-type') ?? '', size: Number(res.headers.get('content-length') ?? 0) };
  }

  /** The manifest's exact bytes, verified against the digest asked for or announced; null when absent. */
  async getManifest(repository: string, reference: string): Promise<Manifest | null> {
    const what = `manifest ${repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    const res = await this.request({
      method: 'GET',
      path: `${repository}/manifests/${reference}`,
      scopes: [`repository:${repository}:pull`],
      what,
      headers: { accept: MANIFEST_ACCEPT },
      ok: [200, 404],
    });
    if (res.status === 404) return null;
    const announced = res.headers.get('docker-content-digest');
    const expected = isDigest(reference) ? reference : isDigest(announced) ? announced : undefined;
    const digest = digestBytes(res.body, expected);
    if (expected && digest !== expected) {
      throw new RegistryError('invalid', this.host, `registry ${this.host} sent ${what} whose bytes have digest ${digest}, not ${expected}`);
    }
    let mediaType = res.headers.get('content-type')?.split(';')[0]?.trim() ?? '';
    try {
      const parsed = JSON.parse(res.body.toString('utf8')) as { mediaType?: unknown };
      if (typeof parsed.mediaType === 'string') mediaType = parsed.mediaType;
    } catch {
      throw new RegistryError('invalid', this.host, `registry ${this.host} sent ${what} that is not JSON`);
    }
    return { digest, mediaType, size: res.body.length, bytes: res.body };
  }

  /** Stores a manifest's exact bytes under a tag or its digest; returns its digest. */
  async putManifest(repository: string, reference: string, manifest: Pick<Manifest, 'bytes' | 'mediaType' | 'digest'>): Promise<string> {
    const what = `manifest ${repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    const res = await this.request({
      method: 'PUT',
      path: `${repository}/manifests/${reference}`,
      scopes: [`repository:${repository}:pull,push`],
      what,
      headers: { 'content-type': manifest.mediaType },
      body: manifest.bytes,
      ok: [200, 201, 202],
    });
    const stored = res.headers.get('docker-content-digest');
    if (isDigest(stored) && stored !== manifest.digest) {
      throw new RegistryError('invalid', this.host, `registry ${this.host} stored ${what} as ${stored}, not ${manifest.digest}: it rewrote the manifest`);
    }
    return manifest.digest;
  }

  /** Deletes a manifest by digest (and so every tag on it); false when it was already gone. */
  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    const res = await this.request({
      method: 'DELETE',
      path: `${repository}/manifests/${digest}`,
      scopes: [`repository:${repository}:delete`],
      what: `manifest ${repository}@${digest}`,
      ok: [200, 202, 404],
    });
    return res.status !== 404;
  }

  /** Every tag of a repository (following `Link` pagination); empty when the repository does not exist. */
  async listTags(repository: string, pageSize = 1000): Promise<string[]> {
    const tags: string[] = [];
    let path = `${repository}/tags/list?n=${pageSize}`;
    for (let page = 0; page < 10_000; page++) {
      const res = await this.request({ method: 'GET', path, scopes: [`repository:${repository}:pull`], what: `tags of ${repository}`, ok: [200, 404] });
      if (res.status === 404) return tags;
      const body = this.json<{ tags?: unknown }>(res.body, `the tag list of ${repository}`);
      if (Array.isArray(body.tags)) tags.push(...body.tags.filter((t): t is string => typeof t === 'string'));
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1];
      if (!next) return tags;
      path = new URL(next, res.url).href;
    }
    return tags;
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.request({
      method: 'HEAD',
      path: `${repository}/blobs/${digest}`,
      scopes: [`repository:${repository}:pull`],
      what: `blob ${repository}@${digest}`,
      ok: [200, 404],
    });
    return res.status === 200;
  }

  /** A blob's bytes as a stream (redirects to a storage backend are followed without credentials). */
  async getBlob(repository: string, digest: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.request({
      method: 'GET',
      path: `${repository}/blobs/${digest}`,
      scopes: [`repository:${repository}:pull`],
      what: `blob ${repository}@${digest}`,
      ok: [200],
      stream: true,
    });
    return res.stream!;
  }

  /**
   * Mounts a blob from another repository of this registry; false when the registry
   * would rather have it uploaded (it answered with an upload session, now cancelled).
   */
  async mountBlob(repository: string, digest: string, from: string): Promise<boolean> {
    const res = await this.request({
      method: 'POST',
      path: `${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`,
      scopes: [`repository:${repository}:pull,push`, `repository:${from}:pull`],
      what: `blob ${repository}@${digest} (mount from ${from})`,
      ok: [201, 202],
    });
    if (res.status === 201) return true;
    const location = res.headers.get('location');
    if (location) {
      await this.request({ method: 'DELETE', path: new URL(location, res.url).href, scopes: [`repository:${repository}:pull,push`], what: `upload of ${repository}@${digest}`, ok: [200, 204, 404] }).catch(() => {});
    }
    return false;
  }

  /**
   * Uploads a blob of known size and digest from a stream: in one PUT, or in PATCH
   * chunks when the registry asks for them (`OCI-Chunk-Min-Length`). The registry
   * checks the digest of what it received; so do we.
   */
  async uploadBlob(repository: string, digest: string, size: number, body: ReadableStream<Uint8Array>): Promise<void> {
    const scopes = [`repository:${repository}:pull,push`];
    const what = `blob ${repository}@${digest}`;
    const started = await this.request({ method: 'POST', path: `${repository}/blobs/uploads/`, scopes, what, ok: [202] });
    let location = this.uploadLocation(started, what);
    const hash = createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256');
    let seen = 0;
    const counted = watched(body, (chunk) => {
      hash.update(chunk);
      seen += chunk.byteLength;
    }, () => {});
    const chunkMin = Number(started.headers.get('oci-chunk-min-length') ?? 0);

    const finishUrl = (url: URL) => {
      url.searchParams.set('digest', digest);
      return url.href;
    };
    if (chunkMin > 0 && size > chunkMin) {
      const chunkSize = Math.max(chunkMin, 5 * 1024 * 1024);
      const reader = counted.getReader();
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      let offset = 0;
      const send = async () => {
        const chunk = Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
        const res = await this.request({
          method: 'PATCH',
          path: location.href,
          scopes,
          what,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` },
          body: chunk,
          ok: [202],
        });
        offset += chunk.length;
        location = this.uploadLocation(res, what);
      };
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        pending.push(value);
        pendingBytes += value.byteLength;
        if (pendingBytes >= chunkSize) await send();
      }
      if (pendingBytes > 0) await send();
      this.checkUpload(hash.digest('hex'), seen, digest, size, what);
      await this.request({ method: 'PUT', path: finishUrl(location), scopes, what, headers: { 'content-length': '0' }, ok: [201, 204] });
      return;
    }
    await this.request({
      method: 'PUT',
      path: finishUrl(location),
      scopes,
      what,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: counted,
      ok: [201, 204],
    });
    this.checkUpload(hash.digest('hex'), seen, digest, size, what);
  }

  /** A JSON object the registry sent, or a RegistryError saying it sent something else. */
  private json<T>(body: Buffer, what: string): T {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as unknown;
      if (typeof parsed === 'object' && parsed !== null) return parsed as T;
    } catch {
      // Reported below.
    }
    throw new RegistryError('invalid', this.host, `registry ${this.host} sent ${what} that is not a JSON object`);
  }

  private uploadLocation(res: Answer, what: string): URL {
    const location = res.headers.get('location');
    if (!location) throw new RegistryError('invalid', this.host, `registry ${this.host} started an upload of ${what} without a Location`);
    return new URL(location, res.url);
  }

  private checkUpload(hex: string, seen: number, digest: string, size: number, what: string): void {
    if (`${digest.slice(0, digest.indexOf(':'))}:${hex}` !== digest || seen !== size) {
      throw new RegistryError('invalid', this.host, `the bytes read for ${what} (${seen} of ${size}) do not have its digest`);
    }
  }

  /** One API call: budget, auth, redirects, retries, stall timeout. */
  private async request(spec: RequestSpec): Promise<Answer> {
    const replayable = !(spec.body instanceof ReadableStream);
    let authRounds = 0;
    for (let attempt = 1; ; attempt++) {
      let res: Answer;
      try {
        res = await this.send(spec);
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        if (!replayable || attempt >= this.attempts) {
          throw new RegistryError('unavailable', this.host, `registry ${this.host} did not answer for ${spec.what}: ${(err as Error).message}`, { cause: err });
        }
        await sleep(backoffMs(attempt, { initialMs: this.retryInitialMs, maxMs: this.retryMaxMs }));
        continue;
      }
      if (spec.ok.includes(res.status)) return res;
      if (res.status === 401 && replayable && authRounds < 2 && (await this.onUnauthorized(res, spec))) {
        authRounds++;
        attempt--;
        continue;
      }
      const reason = registryReason(res.body);
      const detail = `${spec.what}: ${res.status}${reason ? ` ${reason}` : ''}`;
      if (res.status === 401 || res.status === 403) {
        const who = this.credentials ? `the credentials of user "${this.credentials.username}"` : 'anonymous access (no credentials are configured for it)';
        throw new RegistryError('auth', this.host, `registry ${this.host} refused ${who} for ${detail}`, { status: res.status });
      }
      if (RETRIED.has(res.status)) {
        if (replayable && attempt < this.attempts) {
          await sleep(retryAfterMs(res.headers.get('retry-after')) ?? backoffMs(attempt, { initialMs: this.retryInitialMs, maxMs: this.retryMaxMs }));
          continue;
        }
        throw new RegistryError('unavailable', this.host, `registry ${this.host} is unavailable for ${detail}`, { status: res.status });
      }
      throw new RegistryError(res.status === 404 ? 'not_found' : 'invalid', this.host, `registry ${this.host} answered ${detail}`, { status: res.status });
    }
  }

  /** Learns the challenge of a 401 and gets what it asks for; false when there is nothing new to try. */
  private async onUnauthorized(res: Answer, spec: RequestSpec): Promise<boolean> {
    // Another request learnt the scheme or got a token meanwhile: try again with it.
    const now = this.authorization(spec.scopes);
    if (now !== undefined && now !== res.sentAuthorization) return true;
    const challenges = parseChallenges(res.headers.get('www-authenticate') ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer?.params.realm) {
      this.scheme = 'bearer';
      this.bearer = { realm: bearer.params.realm, service: bearer.params.service };
      const key = scopeKey(spec.scopes);
      // The token we sent was refused (expired, revoked, or `insufficient_scope`): ask again, with the scope the registry names.
      this.tokens.forget(key);
      const scopes = [...spec.scopes, ...(bearer.params.scope?.split(' ').filter(Boolean) ?? [])];
      await this.tokens.fetch(key, () => this.fetchToken(scopes));
      return true;
    }
    if (challenges.some((c) => c.scheme === 'basic') && this.credentials && this.scheme !== 'basic') {
      this.scheme = 'basic';
      return true;
    }
    return false;
  }

  private async fetchToken(scopes: string[]): Promise<{ token: string; expiresIn: number | undefined }> {
    const { realm, service } = this.bearer!;
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError('invalid', this.host, `registry ${this.host} names a token realm that is not a URL`);
    }
    if (service) url.searchParams.set('service', service);
    for (const scope of mergeScopes(scopes)) url.searchParams.append('scope', scope);
    const headers: Record<string, string> = this.credentials ? { authorization: basicHeader(this.credentials) } : {};
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await this.fetch(url, { headers, signal: AbortSignal.timeout(this.timeoutMs) });
      } catch (err) {
        if (attempt < this.attempts) {
          await sleep(backoffMs(attempt, { initialMs: this.retryInitialMs, maxMs: this.retryMaxMs }));
          continue;
        }
        throw new RegistryError('unavailable', this.host, `the token service of registry ${this.host} (${url.origin}) did not answer: ${(err as Error).message}`, { cause: err });
      }
      const body = Buffer.from(await res.arrayBuffer());
      if (res.ok) {
        const parsed = this.json<{ token?: unknown; access_token?: unknown; expires_in?: unknown }>(body, `the answer of its token service (${url.origin})`);
        const token = typeof parsed.token === 'string' ? parsed.token : parsed.access_token;
        if (typeof token !== 'string' || !token) throw new RegistryError('invalid', this.host, `the token service of registry ${this.host} (${url.origin}) sent no token`);
        return { token, expiresIn: typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : undefined };
      }
      if (RETRIED.has(res.status) && attempt < this.attempts) {
        await sleep(retryAfterMs(res.headers.get('retry-after')) ?? backoffMs(attempt, { initialMs: this.retryInitialMs, maxMs: this.retryMaxMs }));
        continue;
      }
      const who = this.credentials ? `the credentials of user "${this.credentials.username}"` : 'anonymous access (no credentials are configured for it)';
      const kind = res.status === 401 || res.status === 403 ? 'auth' : RETRIED.has(res.status) ? 'unavailable' : 'invalid';
      throw new RegistryError(kind, this.host, `the token service of registry ${this.host} (${url.origin}) refused ${who}: ${res.status}`, { status: res.status });
    }
  }

  private authorization(scopes: string[]): string | undefined {
    if (this.scheme === 'basic' && this.credentials) return basicHeader(this.credentials);
    if (this.scheme === 'bearer') {
      const token = this.tokens.get(scopeKey(scopes));
      return token ? `Bearer ${token}` : undefined;
    }
    return undefined;
  }

  /** Sends one request through the budget, following redirects; reads the body unless streaming. */
  private async send(spec: RequestSpec): Promise<Answer> {
    const release = await this.budget.acquire();
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const stall = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error(`no progress for ${this.timeoutMs} ms`)), this.timeoutMs);
    };
    const done = () => {
      clearTimeout(timer);
      release();
    };
    stall();
    let sentAuthorization: string | undefined;
    try {
      let url = new URL(spec.path, this.base);
      const origin = url.origin;
      let method: string = spec.method;
      let body: Buffer | ReadableStream<Uint8Array> | undefined = spec.body instanceof ReadableStream ? watched(spec.body, stall, () => {}) : spec.body;
      for (let hop = 0; ; hop++) {
        const headers: Record<string, string> = { ...spec.headers };
        const authorization = url.origin === origin ? this.authorization(spec.scopes) : undefined;
        if (authorization) headers.authorization = authorization;
        if (hop === 0) sentAuthorization = authorization;
        const operation = operationOf(method, url);
        let res: Response;
        try {
          res = await this.fetch(url, {
            method,
            headers,
            redirect: 'manual',
            signal: controller.signal,
            ...(body === undefined ? {} : { body, duplex: 'half' }),
          } as RequestInit);
        } catch (err) {
          metrics.registryRequests.labels(this.host, operation, 'error').inc();
          throw err;
        }
        metrics.registryRequests.labels(this.host, operation, String(res.status)).inc();
        const location = res.headers.get('location');
        if (REDIRECTS.has(res.status) && location && hop < MAX_REDIRECTS && (method === 'GET' || method === 'HEAD')) {
          await res.body?.cancel();
          url = new URL(location, url);
          if (res.status === 303) method = 'GET';
          body = undefined;
          continue;
        }
        if (spec.stream && spec.ok.includes(res.status) && res.body) {
          const stream = watched(res.body, stall, done);
          return { status: res.status, sentAuthorization, headers: res.headers, body: Buffer.alloc(0), stream, url };
        }
        const bytes = method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
        done();
        return { status: res.status, sentAuthorization, headers: res.headers, body: bytes, stream: null, url };
      }
    } catch (err) {
      done();
      throw err;
    }
  }
}
