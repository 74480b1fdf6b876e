// Test images without any pull: an OCI image layout written by hand (a tar
// layer, a config, a manifest per platform, an index over them), pushed to a
// test registry with the real `skopeo`.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { tempDir } from './app.ts';
import { digestOf, skopeoCreds, type TestRegistry } from './registry.ts';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A one-file tar archive (ustar), with a fixed mtime so its digest is stable. */
function tar(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) => header.write(value, offset, length, 'latin1');
  field(0, 100, name);
  field(100, 8, '0000644\0');
  field(108, 8, '0000000\0');
  field(116, 8, '0000000\0');
  field(124, 12, `${content.length.toString(8).padStart(11, '0')}\0`);
  field(136, 12, '00000000000\0');
  field(148, 8, '        ');
  field(156, 1, '0');
  field(257, 6, 'ustar\0');
  field(263, 2, '00');
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

export interface TestImage {
  /** The OCI layout folder; `oci:<dir>:<tag>` names the image for skopeo. */
  dir: string;
  /** Digest of the top-level manifest (the index when multi-platform). */
  digest: string;
  /** Digests of every blob (layers and configs). */
  blobs: string[];
  /** Total bytes of blobs and manifests. */
  bytes: number;
  /** The tag the layout holds. */
  tag: string;
}

/**
 * Writes an OCI layout holding one image tagged `tag`: an index over the given platforms
 * (or a single manifest with `platforms: ['linux/amd64']` and `single: true`), each with
 * `layers` layers (default 1) of `content`, the platform and `layerBytes` random bytes, so
 * different contents give different digests.
 */
export function buildImage(tag: string, content: string, options: { platforms?: string[]; single?: boolean; layerBytes?: number; layers?: number } = {}): TestImage {
  const dir = tempDir('iu-oci-');
  const blobsDir = path.join(dir, 'blobs', 'sha256');
  mkdirSync(blobsDir, { recursive: true });
  const blobs: string[] = [];
  let bytes = 0;
  const put = (data: Buffer | string) => {
    const digest = digestOf(data);
    writeFileSync(path.join(blobsDir, digest.slice(7)), data);
    bytes += Buffer.byteLength(data);
    return { digest, size: Buffer.byteLength(data) };
  };

  const manifests = (options.platforms ?? ['linux/amd64', 'linux/arm64']).map((platform) => {
    const [os, architecture] = platform.split('/') as [string, string];
    const layers = Array.from({ length: options.layers ?? 1 }, (_, n) => {
      // Random, so that gzip cannot shrink it: the layer is as big as asked.
      const filler = options.layerBytes ? randomBytes(options.layerBytes) : Buffer.alloc(0);
      // Gzipped, as registries store layers: skopeo would otherwise compress it on the way and change the digests.
      const archive = tar(`layer-${n}.txt`, Buffer.concat([Buffer.from(`${content} ${platform} ${n}\n`), filler]));
      return { archive, blob: put(gzipSync(archive, { level: 1 })) };
    });
    const config = put(JSON.stringify({ architecture, os, rootfs: { type: 'layers', diff_ids: layers.map((l) => digestOf(l.archive)) }, config: {} }));
    blobs.push(...layers.map((l) => l.blob.digest), config.digest);
    const manifest = put(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l.blob })),
      }),
    );
    return { mediaType: OCI_MANIFEST, ...manifest, platform: { os, architecture } };
  });
  const top = options.single ? manifests[0]! : { mediaType: OCI_INDEX, ...put(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests })) };
  writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const { platform: _platform, ...descriptor } = top as typeof top & { platform?: unknown };
  writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...descriptor, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
  return { dir, digest: top.digest, blobs, bytes, tag };
}

// Asynchronous on purpose: the token service of a test registry runs in this process
// and must go on answering while skopeo waits for a token.
const run = promisify(execFile);

/** Pushes a test image to `registry` as `name:tag` with skopeo (all platforms). */
export async function pushImage(image: TestImage, registry: TestRegistry, name: string, tag: string): Promise<void> {
  await run(
    'skopeo',
    ['copy', '--all', '--quiet', '--dest-tls-verify=false', ...skopeoCreds(registry, '--dest-creds'), `oci:${image.dir}:${image.tag}`, `docker://${registry.host}/${name}:${tag}`],
    { env: { ...process.env, HOME: image.dir } },
  );
}

/** `skopeo inspect --raw` digest of what a registry holds, as an independent check. */
export async function skopeoDigest(registry: TestRegistry, ref: string): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', ...skopeoCreds(registry, '--creds'), `docker://${registry.host}/${ref}`], {
    env: { ...process.env, HOME: tempDir('iu-skopeo-') },
    encoding: 'buffer',
  });
  return digestOf(stdout);
}
