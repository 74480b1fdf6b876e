// Liveness and readiness, for Kubernetes probes and load balancers.
import { Router } from 'express';
import type { Store } from '../../shared/store.ts';

/** /healthz: the process answers. /readyz: the database is open and fully migrated. */
export function healthRouter(store: Pick<Store, 'isReady'>): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const ready = store.isReady();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', database: ready ? 'ok' : 'unavailable' });
  });
  return router;
}
