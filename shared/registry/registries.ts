// One client per registry host, configured from `registries:` (credentials,
// plain HTTP, request budget), so every request to a registry shares its budget.
import type { Config } from '../config.ts';
import { RegistryClient } from './client.ts';

export interface Registries {
  /** The client of a registry host as image references write it (`docker.io`, `gcr.io`, `127.0.0.1:5000`). */
  client(host: string): RegistryClient;
}

export function createRegistries(config: Pick<Config, 'registries' | 'mirror'>): Registries {
  const clients = new Map<string, RegistryClient>();
  return {
    client(host) {
      const key = host === 'index.docker.io' ? 'docker.io' : host.toLowerCase();
      let client = clients.get(key);
      if (!client) {
        const settings = config.registries.find((r) => r.host.toLowerCase() === key);
        client = new RegistryClient({
          host: key,
          insecure: settings?.insecure ?? false,
          ...(settings?.username && settings.password ? { credentials: { username: settings.username, password: settings.password } } : {}),
          // An unlisted registry gets the client's defaults, which are the configuration's.
          ...(settings ? { maxConcurrency: settings.maxConcurrency, maxRequestsPerSecond: settings.maxRequestsPerSecond } : {}),
          timeoutMs: config.mirror.requestTimeout,
        });
        clients.set(key, client);
      }
      return client;
    },
  };
}
