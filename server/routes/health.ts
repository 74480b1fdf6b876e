// Liveness and readiness, for Kubernetes probes and load balancers.
import type { Request, Response } from 'express';
import type { Store } from '../../shared/store.ts';

/** /healthz: the process answers. /readyz: the database is open and fully migrated. */
export function healthRoutes(store: Pick<Store, 'isReady'>) {
  return {
    healthz(_req: Request, res: Response): void {
      res.json({ status: 'ok' });
    },
    readyz(_req: Request, res: Response): void {
      const ready = store.isReady();
      res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', database: ready ? 'ok' : 'unavailable' });
    },
  };
}
