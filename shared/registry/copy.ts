// Copying one image (every platform of it) from a source repository to a
// mirror repository: manifests byte for byte so digests never change, blobs
// the mirror lacks streamed across (or mounted from another repository of the
// mirror), each platform's manifest stored by digest before the tag is.
import { isDigest, isIndex, RegistryError, type Manifest, type RegistryClient } from './client.ts';

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  urls?: unknown;
}

export interface CopyResult {
  digest: string;
  mediaType: string;
  /** Bytes of blobs and manifests sent to the mirror (0 when it held everything). */
  bytes: number;
  /** Blobs streamed across, and blobs mounted from another repository of the mirror. */
  blobsCopied: number;
  blobsMounted: number;
  manifestsCopied: number;
}

export interface CopyOptions {
  /** A repository of the mirror registry that is known to hold a blob (for a cross-repository mount). */
  mountSource?: (digest: string) => string | undefined;
  /** Called for every blob the mirror now holds in `repository`. */
  onBlob?: (digest: string, repository: string) => void;
  /** Blobs copied at once (default 4). */
  concurrency?: number;
}

/** Layers that must not be copied (foreign or non-distributable: pulled from their own URLs). */
function distributable(d: Descriptor): boolean {
  return !(d.mediaType ?? '').includes('nondistributable') && !(d.mediaType ?? '').includes('foreign');
}

function parseJson(manifest: Manifest, registry: string, what: string): Record<string, unknown> {
  try {
    return JSON.parse(manifest.bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new RegistryError('invalid', registry, `${what} is not JSON`);
  }
}

function descriptors(value: unknown, registry: string, what: string): Descriptor[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((d: unknown) => {
    const desc = d as Descriptor;
    if (typeof d !== 'object' || d === null || !isDigest(desc.digest) || typeof desc.size !== 'number' || desc.size < 0) {
      throw new RegistryError('invalid', registry, `${what} holds a descriptor without a valid digest and size`);
    }
    return desc;
  });
}

/** Runs `work` over `items` with at most `limit` at once; rejects with the first failure once all have settled. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (err) {
        failure ??= err;
        next = items.length;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure;
}

/**
 * Copies `source`'s `sourceRepository:tag` to `mirror`'s `mirrorRepository:tag`, all
 * platforms. `expected` is the top manifest as the source announced it (from a HEAD):
 * the copy refuses a manifest with another digest, so the mirror never gets a tag
 * that moved while it was read.
 */
export async function copyImage(
  source: RegistryClient,
  sourceRepository: string,
  mirror: RegistryClient,
  mirrorRepository: string,
  tag: string,
  expected: string,
  options: CopyOptions = {},
): Promise<CopyResult> {
  const result: CopyResult = { digest: expected, mediaType: '', bytes: 0, blobsCopied: 0, blobsMounted: 0, manifestsCopied: 0 };
  const sameRegistry = source === mirror;
  const started = new Map<string, Promise<void>>();

  async function copyBlob(d: Descriptor): Promise<void> {
    if (await mirror.hasBlob(mirrorRepository, d.digest)) return;
    const from = sameRegistry ? sourceRepository : options.mountSource?.(d.digest);
    if (from && from !== mirrorRepository && (await mirror.mountBlob(mirrorRepository, d.digest, from))) {
      result.blobsMounted++;
      return;
    }
    // A stream cannot be replayed by the request's own retries: a failed transfer starts over here.
    for (let attempt = 1; ; attempt++) {
      try {
        await mirror.uploadBlob(mirrorRepository, d.digest, d.size, await source.getBlob(sourceRepository, d.digest));
        break;
      } catch (err) {
        if (!(err instanceof RegistryError && err.kind === 'unavailable') || attempt >= 3) throw err;
      }
    }
    result.blobsCopied++;
    result.bytes += d.size;
  }

  /** Blobs are shared between platforms: each is copied once, whoever needs it first. */
  function blob(d: Descriptor): Promise<void> {
    let job = started.get(d.digest);
    if (!job) {
      job = copyBlob(d).then(() => options.onBlob?.(d.digest, mirrorRepository));
      started.set(d.digest, job);
    }
    return job;
  }

  async function copyManifest(manifest: Manifest, what: string): Promise<void> {
    const body = parseJson(manifest, source.host, what);
    const blobs = [...descriptors(body.config, source.host, what), ...descriptors(body.layers, source.host, what)].filter(distributable);
    await eachLimited(blobs, options.concurrency ?? 4, blob);
  }

  const what = `${source.host}/${sourceRepository}:${tag}`;
  const top = await source.getManifest(sourceRepository, expected);
  if (!top) throw new RegistryError('not_found', source.host, `registry ${source.host} no longer holds ${what} (${expected})`);
  result.mediaType = top.mediaType;

  if (isIndex(top.mediaType)) {
    const children = descriptors(parseJson(top, source.host, what).manifests, source.host, what);
    await eachLimited(children, 2, async (child) => {
      if (await mirror.headManifest(mirrorRepository, child.digest)) return;
      const manifest = await source.getManifest(sourceRepository, child.digest);
      if (!manifest) throw new RegistryError('not_found', source.host, `registry ${source.host} lacks ${sourceRepository}@${child.digest}, a platform of ${what}`);
      await copyManifest(manifest, `${sourceRepository}@${child.digest}`);
      await mirror.putManifest(mirrorRepository, child.digest, manifest);
      result.manifestsCopied++;
      result.bytes += manifest.size;
    });
  } else {
    await copyManifest(top, what);
  }
  await mirror.putManifest(mirrorRepository, tag, top);
  result.manifestsCopied++;
  result.bytes += top.size;
  return result;
}
