// The mirror step of a sync (DESIGN §5 step 2): before any line points the
// cluster at `image:tag`, the mirror registry next to it must hold that tag.
// verify: look, and wait while it is not there. copy: copy it from its source
// (every platform), unless the mirror already holds the same digest. A tag that
// names two digests is refused. After a sync, `keep` deletes old mirrored tags.
import { backoffMs } from '../shared/backoff.ts';
import type { Config } from '../shared/config.ts';
import { SyncError, type SyncErrorCode } from '../shared/errors.ts';
import { normalizeImageName } from '../shared/image-ref.ts';
import type { Logger } from '../shared/log.ts';
import { ATTR, inSpan, markError } from '../shared/telemetry.ts';
import { RegistryError } from '../shared/registry/client.ts';
import { copyImage, type CopyResult } from '../shared/registry/copy.ts';
import { createRegistries, type Registries } from '../shared/registry/registries.ts';
import type { DueTarget, MirrorTag, StepEvent, SyncRecord, SyncRecords, TargetResult } from '../shared/sync-records.ts';

/** What the mirror step hands the rest of the sync. */
export interface MirrorOutcome {
  /** Targets whose image the mirror holds, with the digest it holds. */
  ready: DueTarget[];
  /** Targets that wait, failed or retry. */
  results: TargetResult[];
  events: StepEvent[];
  mirrorTags: MirrorTag[];
}

export interface Mirror {
  /** With `dryRun`, nothing is copied: an image the source holds counts as held, at the source's digest. */
  confirm(targets: DueTarget[], options?: { dryRun?: boolean }): Promise<MirrorOutcome>;
  /** The mirror's name of an image (`127.0.0.1:5000/mirror/gcr.io/acme/app`): lines may name either. */
  aliases(image: string): string[];
  /** Called after a sync is recorded: starts `keep`'s clean-up of the images it synced. */
  afterSync(record: SyncRecord): void;
  /** Resolves when no clean-up is running or queued. */
  idle(): Promise<void>;
}

export interface MirrorDeps {
  config: Config;
  records: SyncRecords;
  log: Logger;
  now: () => number;
  registries?: Registries;
  random?: () => number;
}

/** Where an image lives: its source registry and path, its repository in the mirror, and its full mirror name. */
export interface MirrorLocation {
  sourceHost: string;
  sourcePath: string;
  repository: string;
  name: string;
}

/**
 * The mirror location of a normalised image name under `registry` (`host[:port][/prefix]`):
 * path-preserving, so every service and environment that runs the image shares one copy.
 * A source host's port becomes `_port` (a repository path cannot hold `:`).
 */
export function mirrorLocation(registry: string, image: string): MirrorLocation {
  const slash = registry.indexOf('/');
  const mirrorHost = slash === -1 ? registry : registry.slice(0, slash);
  const prefix = slash === -1 ? '' : `${registry.slice(slash + 1)}/`;
  const cut = image.indexOf('/');
  const sourceHost = image.slice(0, cut);
  const sourcePath = image.slice(cut + 1);
  const hostAsPath = sourceHost.toLowerCase().replace(/[[\]]/g, '').replace(/:/g, '_');
  const repository = `${prefix}${hostAsPath}/${sourcePath}`;
  return { sourceHost, sourcePath, repository, name: `${mirrorHost}/${repository}` };
}

type Confirmation =
  | { kind: 'held'; digest: string; copied?: CopyResult; ms: number }
  | { kind: 'missing'; message: string; timeoutMessage: string }
  | { kind: 'refused'; code: SyncErrorCode; message: string };

const REGISTRY_CODES: Record<RegistryError['kind'], SyncErrorCode> = {
  unavailable: 'REGISTRY_UNAVAILABLE',
  auth: 'REGISTRY_AUTH_FAILED',
  not_found: 'REGISTRY_FAILED',
  invalid: 'REGISTRY_FAILED',
};

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const BLOB_HOMES_MAX = 50_000;

export function createMirror(deps: MirrorDeps): Mirror {
  const { config, records, log, now } = deps;
  const settings = config.mirror;
  if (settings.mode === 'off' || !settings.registry) throw new Error('createMirror needs mirror.mode verify or copy');
  const mirrorRegistry = settings.registry;
  const registries = deps.registries ?? createRegistries(config);
  const mirrorHost = mirrorRegistry.split('/')[0]!;
  const mirror = registries.client(mirrorHost);
  const random = deps.random ?? Math.random;
  // Where the mirror already holds a blob, so another image's copy can mount it instead of copying it.
  const blobHomes = new Map<string, string>();
  const queued = new Set<string>();
  let cleaning: Promise<void> = Promise.resolve();

  const locate = (image: string) => mirrorLocation(mirrorRegistry, image);

  /** Whether the mirror holds `image:tag` (copying it there in copy mode); throws RegistryError. */
  async function confirmOne(image: string, tag: string, desiredDigest: string | null, dryRun: boolean): Promise<Confirmation> {
    const started = performance.now();
    const where = locate(image);
    const inMirror = `${where.name}:${tag}`;
    const giveUp = `(looking again until ${formatDuration(settings.timeout)} after the request)`;
    const moved = (place: string, held: string) =>
      `${place} holds ${tag} as ${held}, but the request named ${desiredDigest}: a tag must always mean the same image; build and send a new tag`;

    if (settings.mode === 'verify') {
      const held = await mirror.headManifest(where.repository, tag);
      if (!held) {
        return {
          kind: 'missing',
          message: `the mirror does not hold ${inMirror} yet ${giveUp}`,
          timeoutMessage: `the mirror still does not hold ${inMirror} ${formatDuration(settings.timeout)} after the request (mirror.timeout): push the image there, then send the request again`,
        };
      }
      if (desiredDigest && held.digest !== desiredDigest) return { kind: 'refused', code: 'TAG_MUTATED', message: moved(`the mirror's ${where.name}`, held.digest) };
      return { kind: 'held', digest: held.digest, ms: performance.now() - started };
    }

    const source = registries.client(where.sourceHost);
    const [origin, held] = await Promise.all([source.headManifest(where.sourcePath, tag), mirror.headManifest(where.repository, tag)]);
    if (!origin) {
      return {
        kind: 'missing',
        message: `${image}:${tag} is not in its registry ${where.sourceHost} yet ${giveUp}`,
        timeoutMessage: `${image}:${tag} is still not in its registry ${where.sourceHost} ${formatDuration(settings.timeout)} after the request (mirror.timeout): push it, then send the request again`,
      };
    }
    if (desiredDigest && origin.digest !== desiredDigest) return { kind: 'refused', code: 'TAG_MUTATED', message: moved(image, origin.digest) };
    if (held && held.digest !== origin.digest) {
      return {
        kind: 'refused',
        code: 'TAG_MUTATED',
        message: `the mirror holds ${inMirror} as ${held.digest}, but ${image}:${tag} is now ${origin.digest}: the tag was moved after it was mirrored. A tag must always mean the same image: build and send a new tag (the mirror's copy is left as it is)`,
      };
    }
    if (held || dryRun) return { kind: 'held', digest: origin.digest, ms: performance.now() - started };
    const copied = await inSpan('registry.copy', { attributes: { [ATTR.registry]: where.sourceHost, [ATTR.digest]: origin.digest } }, () => copyImage(source, where.sourcePath, mirror, where.repository, tag, origin.digest, {
      mountSource: (digest) => blobHomes.get(digest),
      onBlob: (digest, repository) => {
        if (blobHomes.size >= BLOB_HOMES_MAX) blobHomes.delete(blobHomes.keys().next().value!);
        blobHomes.set(digest, repository);
      },
    }));
    return { kind: 'held', digest: copied.digest, copied, ms: performance.now() - started };
  }

  /** Confirms every distinct image:tag once, a few at a time (each registry's budget bounds the rest). */
  async function confirmAll(targets: DueTarget[], dryRun: boolean): Promise<Map<string, Confirmation | RegistryError>> {
    const keys = [...new Set(targets.map(keyOf))];
    const outcomes = new Map<string, Confirmation | RegistryError>();
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        const t = targets.find((x) => keyOf(x) === key)!;
        const attributes = { [ATTR.image]: t.image, [ATTR.tag]: t.desiredTag, [ATTR.mode]: settings.mode, [ATTR.registry]: mirrorHost };
        await inSpan('mirror.image', { attributes }, async (span) => {
          try {
            const o = await confirmOne(t.image, t.desiredTag, t.desiredDigest, dryRun);
            outcomes.set(key, o);
            span.setAttribute(ATTR.outcome, o.kind === 'held' ? (o.copied ? 'mirrored' : 'confirmed') : o.kind);
            if (o.kind === 'held') span.setAttributes({ [ATTR.digest]: o.digest, ...(o.copied ? { [ATTR.bytes]: o.copied.bytes } : {}) });
            if (o.kind === 'refused') markError(span, new Error(o.message), o.code);
          } catch (err) {
            if (!(err instanceof RegistryError)) throw err;
            outcomes.set(key, err);
            markError(span, err, REGISTRY_CODES[err.kind]);
          }
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, keys.length) }, worker));
    return outcomes;
  }

  function keyOf(t: DueTarget): string {
    return `${t.image}:${t.desiredTag}@${t.desiredDigest ?? ''}`;
  }

  async function confirm(targets: DueTarget[], options: { dryRun?: boolean } = {}): Promise<MirrorOutcome> {
    const outcome: MirrorOutcome = { ready: [], results: [], events: [], mirrorTags: [] };
    const outcomes = await confirmAll(targets, options.dryRun ?? false);
    const at = now();
    const recorded = new Set<string>();
    for (const t of targets) {
      const o = outcomes.get(keyOf(t))!;
      const where = locate(t.image);
      if (o instanceof RegistryError) {
        const error = new SyncError(REGISTRY_CODES[o.kind], o.message);
        log.warn({ targetId: t.id, image: t.image, tag: t.desiredTag, registry: o.registry, code: error.code, reason: o.message }, 'mirror step failed');
        outcome.results.push({
          kind: 'retry',
          target: t,
          error: { code: error.code, message: error.message },
          retryAt: at + backoffMs(t.attempts + 1, { initialMs: config.syncer.retryInitial, maxMs: config.syncer.retryMax }, random),
        });
      } else if (o.kind === 'refused') {
        outcome.results.push({ kind: 'failed', target: t, error: { code: o.code, message: o.message } });
      } else if (o.kind === 'missing') {
        const deadline = t.requestedAt + settings.timeout;
        if (at >= deadline) {
          outcome.results.push({ kind: 'failed', target: t, error: { code: 'MIRROR_TIMEOUT', message: o.timeoutMessage } });
        } else {
          // The wait grows with the time already waited (about doubling the look count's spacing) rather than
          // with `attempts`, which stays the count of real failures and so drives their backoff alone.
          const base = Math.min(settings.retryMax, Math.max(settings.retryInitial, at - t.requestedAt));
          const wait = Math.round(base * (0.5 + random() / 2));
          outcome.results.push({ kind: 'waiting', target: t, message: o.message, retryAt: Math.min(at + wait, deadline) });
        }
      } else {
        outcome.ready.push({ ...t, confirmedDigest: o.digest });
        const mirrored = `${where.name}:${t.desiredTag}`;
        outcome.events.push(
          o.copied
            ? {
                targetId: t.id,
                type: 'mirrored',
                tag: t.desiredTag,
                digest: o.digest,
                message: `copied to ${mirrored}: ${o.copied.blobsCopied} blobs copied, ${o.copied.blobsMounted} mounted, ${o.copied.bytes} bytes`,
                details: { mirror: mirrored, bytes: o.copied.bytes, blobsCopied: o.copied.blobsCopied, blobsMounted: o.copied.blobsMounted, manifests: o.copied.manifestsCopied, ms: Math.round(o.ms) },
              }
            : { targetId: t.id, type: 'mirror_confirmed', tag: t.desiredTag, digest: o.digest, message: `${mirrored} is in the mirror`, details: { mirror: mirrored, ms: Math.round(o.ms * 10) / 10 } },
        );
        if (!recorded.has(mirrored)) {
          recorded.add(mirrored);
          outcome.mirrorTags.push({ repository: where.repository, tag: t.desiredTag, digest: o.digest, image: t.image });
          if (o.copied) log.info({ image: t.image, tag: t.desiredTag, mirror: mirrored, ...o.copied, ms: Math.round(o.ms) }, 'image mirrored');
        }
      }
    }
    return outcome;
  }

  /**
   * `keep`: deletes the mirrored tags of an image beyond the newest `keep` that no target
   * wants or runs, never a digest that a kept tag (recorded by us or not) still points at.
   * Only tags this service recorded are ever candidates.
   */
  async function cleanUp(image: string): Promise<void> {
    const where = locate(image);
    const rows = records.mirrorTags(where.repository);
    if (rows.length <= settings.keep) return;
    const wanted = records.wantedTags(image);
    const candidates = rows.slice(settings.keep).filter((r) => !wanted.has(r.tag));
    if (candidates.length === 0) return;
    const present = new Set(await mirror.listTags(where.repository));
    const doomed = new Set(candidates.filter((c) => present.has(c.tag)).map((c) => c.tag));
    for (const c of candidates) if (!present.has(c.tag)) records.forgetMirrorTag(where.repository, c.tag);
    if (doomed.size === 0) return;

    // The digest every remaining tag points at now (it may have moved since we recorded it).
    const digestOf = new Map<string, string | undefined>();
    await Promise.all([...present].map(async (tag) => digestOf.set(tag, (await mirror.headManifest(where.repository, tag))?.digest)));
    const kept = new Set([...present].filter((tag) => !doomed.has(tag)).map((tag) => digestOf.get(tag)));
    const deleted: string[] = [];
    const spared: string[] = [];
    const gone = new Set<string>();
    for (const tag of doomed) {
      const digest = digestOf.get(tag);
      if (!digest || kept.has(digest)) {
        spared.push(tag);
        continue;
      }
      if (!gone.has(digest)) await mirror.deleteManifest(where.repository, digest);
      gone.add(digest);
      records.forgetMirrorTag(where.repository, tag);
      deleted.push(tag);
    }
    log.info({ image, mirror: where.name, keep: settings.keep, deleted, spared }, 'mirror clean-up');
  }

  return {
    confirm,
    aliases(image) {
      const name = normalizeImageName(locate(image).name);
      return name ? [name] : [];
    },
    afterSync(record) {
      if (settings.keep === 0) return;
      const images = new Set(record.results.filter((r) => r.kind === 'synced').map((r) => r.target.image));
      for (const image of images) {
        if (queued.has(image)) continue;
        queued.add(image);
        // One clean-up at a time, after the sync: never on the path from CI to the commit.
        cleaning = cleaning.then(async () => {
          queued.delete(image);
          try {
            await cleanUp(image);
          } catch (err) {
            log.warn({ image, reason: (err as Error).message }, 'mirror clean-up failed: it runs again after the next sync of the image');
          }
        });
      }
    },
    idle: () => cleaning,
  };
}
