// Runs the HTTP server until its signal aborts, then drains and closes cleanly.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../shared/config.ts';
import type { Logger } from '../shared/log.ts';
import type { Store } from '../shared/store.ts';
import { createApp } from './app.ts';
import { createAuth } from './auth.ts';

export interface ServerOptions {
  config: Config;
  store: Store;
  log: Logger;
  signal: AbortSignal;
  onRecorded?: () => void;
  onListening?: (address: AddressInfo) => void;
}

/**
 * Listens until `signal` aborts; then stops accepting connections, lets
 * in-flight requests finish (up to server.shutdownTimeout) and resolves.
 */
export async function runServer(options: ServerOptions): Promise<void> {
  const { config, store, log, signal } = options;
  const app = createApp({ config, store, log, auth: createAuth(config.tokens), onRecorded: options.onRecorded });
  const server = app.listen(config.server.port, config.server.host);
  const inFlight = new Set<ServerResponse>();
  server.on('request', (_req, res: ServerResponse) => {
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
  });
  // Keep-alive must outlast a load balancer's idle timeout, or it resets connections mid-request.
  server.keepAliveTimeout = 65_000;
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as AddressInfo;
  log.info({ host: address.address, port: address.port }, 'listening');
  options.onListening?.(address);

  if (!signal.aborted) await once(signal, 'abort');
  log.info({ timeoutMs: config.server.shutdownTimeout }, 'stopping: draining requests');
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // close() ends only the connections idle at this moment; a keep-alive connection whose
  // request is still running would hold the server open until the timeout. Tell its
  // client not to reuse it, and close it as soon as its response is out.
  server.on('request', (_req, res) => res.setHeader('Connection', 'close'));
  for (const res of inFlight) {
    if (!res.headersSent) res.setHeader('Connection', 'close');
    res.once('finish', () => setImmediate(() => server.closeIdleConnections()));
  }
  server.closeIdleConnections();
  const timer = setTimeout(() => {
    log.warn('requests still running at the shutdown timeout: closing their connections');
    server.closeAllConnections();
  }, config.server.shutdownTimeout);
  await closed;
  clearTimeout(timer);
}
