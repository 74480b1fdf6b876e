// The syncer's own small HTTP server when it runs apart from the API server:
// /metrics (its sync metrics live in its process) and /healthz, nothing else.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../shared/log.ts';
import { registry } from '../shared/metrics.ts';

export async function runMetricsServer(options: { host: string; port: number; log: Logger; signal: AbortSignal }): Promise<void> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end('{"error":{"code":"METHOD_NOT_ALLOWED","message":"use GET"}}');
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NOT_FOUND","message":"this port serves /metrics and /healthz"}}');
    }
  });
  server.listen(options.port, options.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as AddressInfo;
  options.log.info({ host: address.address, port: address.port }, 'metrics listening');
  if (!options.signal.aborted) await once(options.signal, 'abort');
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
