// POST /v1/sync: an admin's "sync now", e.g. after fixing a repository's credentials.
import type { Request, Response } from 'express';
import type { Config } from '../../shared/config.ts';
import { ApiError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Store } from '../../shared/store.ts';
import type { Principal } from '../auth.ts';
import { quote } from '../schemas.ts';

export interface SyncDeps {
  config: Config;
  store: Store;
  log: Logger;
  onRecorded?: () => void;
}

/** The handler of /v1/sync, registered by createApp. */
export function syncRoutes({ config, store, log, onRecorded }: SyncDeps) {
  const repositories = new Set(config.repositories.map((r) => r.name));
  return {
    /** Makes every pending target (of `?repository=`, or all) due now and wakes the syncer. */
    syncNow(req: Request, res: Response): void {
      const principal = res.locals.principal as Principal;
      if (!principal.admin) throw new ApiError('FORBIDDEN', `token ${quote(principal.name)} is not an admin token: only admin tokens may start a sync`);
      const repository = req.query.repository;
      if (repository !== undefined && (typeof repository !== 'string' || !repositories.has(repository))) {
        throw new ApiError('REPOSITORY_NOT_FOUND', `repository ${quote(String(repository))} is not a configured repository`, 'repository');
      }
      const due = store.makeDue(repository ?? null, Date.now());
      log.info({ repository: repository ?? '(all)', due, by: principal.name }, 'sync requested');
      onRecorded?.();
      res.status(202).json({ due });
    },
  };
}
