// A real app over a real SQLite file with the real migrations, in a temp dir.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createApp } from '../../server/app.ts';
import { createAuth } from '../../server/auth.ts';
import { parseConfig } from '../../shared/config-file.ts';
import { createLogger } from '../../shared/log.ts';
import { openStore } from '../../shared/store.ts';
import { tokensYaml } from './tokens.ts';

const GITOPS = `  - name: gitops
    url: https://git.example.com/acme/gitops.git
    branch: main
    branches: ["main", "release-*"]
`;
const INFRA = `  - name: infra
    url: ./infra.git
`;

export interface AppOptions {
  /** Appended to the config verbatim. */
  extra?: string;
  /** Configure only the gitops repository (the other tokens then match nothing, so they are left out). */
  oneRepository?: boolean;
}

/** A config file with the gitops and infra repositories and the test tokens. */
export function configYaml(dir: string, { extra = '', oneRepository = false }: AppOptions = {}): string {
  const tokens = tokensYaml({ gitopsOnly: oneRepository });
  return `server: { host: 127.0.0.1, port: 0 }
database: { path: ${path.join(dir, 'db', 'image-updater.db')} }
log: { level: debug }
repositories:
${GITOPS}${oneRepository ? '' : INFRA}${tokens}${extra}`;
}

export function tempDir(prefix = 'iu-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Builds the app as the server does, returning it with its store and every log line it wrote. */
export function makeApp(options: AppOptions = {}) {
  const dir = tempDir();
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, configYaml(dir, options));
  const config = parseConfig(configYaml(dir, options), file);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const log = createLogger('debug', sink);
  const store = openStore(config.database.path, { synchronous: 'full' });
  const app = createApp({ config, store, log, auth: createAuth(config.tokens) });
  const count = (table: 'targets' | 'events') =>
    store.db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  return { app, store, config, dir, logs, count };
}
