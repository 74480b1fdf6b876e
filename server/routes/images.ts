// POST and GET /v1/images: record desired tags, and show targets and their history.
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Config, RepositoryConfig } from '../../shared/config.ts';
import { ApiError } from '../../shared/errors.ts';
import { globsToRegex } from '../../shared/glob.ts';
import { normalizeImageName } from '../../shared/image-ref.ts';
import type { Logger } from '../../shared/log.ts';
import type { Store, UpdateRequest } from '../../shared/store.ts';
import { activeTraceparent } from '../../shared/telemetry.ts';
import { deniedField, readScope, type Principal } from '../auth.ts';
import { presentEvent, presentTarget } from '../present.ts';
import { parseId, parseImagesBody, parseListQuery, quote, type UpdateInput } from '../schemas.ts';

export interface ImagesDeps {
  config: Config;
  store: Store;
  log: Logger;
  /** Called once updates are durable, so an in-process syncer can look at once. */
  onRecorded?: () => void;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Resolves one validated update against the configuration and the caller's scope. */
function resolveUpdate(
  input: UpdateInput,
  field: (name: string) => string,
  ctx: { repositories: Map<string, RepositoryConfig & { allowed: RegExp }>; mutableTags: Set<string>; principal: Principal },
): UpdateRequest {
  const image = normalizeImageName(input.image)!;
  if (ctx.mutableTags.has(input.tag.toLowerCase())) {
    throw new ApiError(
      'MUTABLE_TAG',
      `${field('tag')} ${quote(input.tag)} is a mutable tag and is refused: send a unique tag (a version or commit SHA) so that every deployment is reproducible`,
      field('tag'),
    );
  }
  let name = input.repository;
  if (name === undefined) {
    if (ctx.repositories.size !== 1) {
      throw new ApiError(
        'REPOSITORY_REQUIRED',
        `${field('repository')} is required: ${ctx.repositories.size} repositories are configured (${[...ctx.repositories.keys()].join(', ')})`,
        field('repository'),
      );
    }
    name = ctx.repositories.keys().next().value!;
  }
  const repo = ctx.repositories.get(name);
  if (!repo) {
    throw new ApiError('REPOSITORY_NOT_FOUND', `${field('repository')} ${quote(name)} is not a configured repository`, field('repository'));
  }
  const branch = input.branch ?? repo.branch;
  if (!repo.allowed.test(branch)) {
    throw new ApiError(
      'BRANCH_NOT_ALLOWED',
      `${field('branch')} ${quote(branch)} is not allowed for repository ${quote(name)} (allowed: ${repo.branches!.join(', ')})`,
      field('branch'),
    );
  }
  const target = { repository: name, branch, image, keyword: input.keyword };
  const denied = deniedField(ctx.principal, target);
  if (denied) {
    throw new ApiError(
      'FORBIDDEN',
      `token ${quote(ctx.principal.name)} may not update ${denied} ${quote(target[denied])}`,
      field(denied),
    );
  }
  return { ...target, tag: input.tag, digest: input.digest ?? null };
}

/** Checks a batch names each target once; identical repeats are merged. Returns the unique updates and each input's index among them. */
function dedupe(updates: UpdateRequest[]): { unique: UpdateRequest[]; slot: number[] } {
  const seen = new Map<string, number>();
  const unique: UpdateRequest[] = [];
  const slot = updates.map((u, i) => {
    const key = JSON.stringify([u.repository, u.branch, u.image, u.keyword]);
    const at = seen.get(key);
    if (at === undefined) {
      seen.set(key, unique.length);
      unique.push(u);
      return unique.length - 1;
    }
    const first = unique[at]!;
    if (first.tag !== u.tag || first.digest !== u.digest) {
      throw new ApiError(
        'CONFLICTING_UPDATES',
        `updates[${i}] asks for ${u.image}:${u.tag} but an earlier update asks for ${first.tag} on the same repository, branch and keyword`,
        `updates[${i}]`,
      );
    }
    return at;
  });
  return { unique, slot };
}

/** The handlers of /v1/images, registered by createApp. */
export function imagesRoutes({ config, store, log, onRecorded }: ImagesDeps) {
  const repositories = new Map(
    config.repositories.map((r) => [r.name, { ...r, allowed: globsToRegex(r.branches ?? [r.branch]) }]),
  );
  const mutableTags = new Set(config.policy.mutableTags.map((t) => t.toLowerCase()));

  async function create(req: Request, res: Response): Promise<void> {
    const principal = res.locals.principal as Principal;
    const { updates: inputs, batch } = parseImagesBody(req.body);
    const ctx = { repositories, mutableTags, principal };
    const resolved = inputs.map((input, i) =>
      resolveUpdate(input, (name) => (batch ? `updates[${i}].${name}` : name), ctx),
    );
    const { unique, slot } = dedupe(resolved);
    const traceparent = req.get('traceparent');
    const meta = {
      requestedBy: principal.name,
      at: Date.now(),
      batchId: batch ? randomUUID() : null,
      // Our span of this request when tracing (a child of the caller's), else the caller's context as sent.
      traceparent: activeTraceparent() ?? (traceparent && TRACEPARENT.test(traceparent) ? traceparent : null),
    };
    const results = await store.recordUpdates(unique, meta);
    for (const { change, target } of results) {
      log.info(
        { targetId: target.id, repository: target.repository, branch: target.branch, image: target.image, tag: target.desiredTag, keyword: target.keyword, change, by: principal.name },
        'update requested',
      );
    }
    if (results.some((r) => r.change !== 'unchanged')) onRecorded?.();
    const shown = slot.map((s, i) => {
      const { change, target } = results[s]!;
      // A repeat inside one batch changed nothing beyond what its first occurrence did.
      return { change: slot.indexOf(s) === i ? change : 'unchanged', target: presentTarget(target) };
    });
    res.status(202).json(batch ? { batchId: meta.batchId, updates: shown } : shown[0]);
  }

  function list(req: Request, res: Response): void {
    const principal = res.locals.principal as Principal;
    const { image, ...filter } = parseListQuery(req.query);
    const page = store.listTargets(
      { ...filter, ...(image === undefined ? {} : { image: normalizeImageName(image)! }) } as Parameters<Store['listTargets']>[0],
      readScope(principal),
    );
    res.json({ targets: page.targets.map(presentTarget), next: page.next === null ? null : String(page.next) });
  }

  function findTarget(req: Request, res: Response) {
    const id = parseId(String(req.params.id));
    const target = store.getTarget(id, readScope(res.locals.principal as Principal));
    if (!target) throw new ApiError('NOT_FOUND', `no image target with id ${id}`);
    return target;
  }

  return {
    create,
    list,
    get(req: Request, res: Response): void {
      res.json(presentTarget(findTarget(req, res)));
    },
    events(req: Request, res: Response): void {
      res.json({ events: store.listEvents(findTarget(req, res).id).map(presentEvent) });
    },
  };
}
