// A syncer wired to a real git server and a real store, for integration tests.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseConfig } from '../../shared/config-file.ts';
import { createLogger } from '../../shared/log.ts';
import { openStore, type UpdateRequest } from '../../shared/store.ts';
import { createSyncRecords } from '../../shared/sync-records.ts';
import { createSyncLoop } from '../../syncer/loop.ts';
import { tempDir } from './app.ts';
import { createRepository, git, GIT_PASSWORD, GIT_USER, type GitServer } from './git-server.ts';
import { tokensYaml } from './tokens.ts';

export const KEYWORD = 'image-automation-prod';

export interface SyncFixtureOptions {
  files: Record<string, string | Buffer>;
  /** Extra YAML under the repository entry (indented 4 spaces). */
  repository?: string;
  /** Syncer settings over the fixture's (quietWindow 0, fast retries). */
  syncer?: Record<string, string>;
  /** The repository URL from the bare repository's path and the HTTP URL (default: the HTTP URL). */
  url?: (bare: string, httpUrl: string) => string;
  /** The repository's `auth` as YAML (default: the git server's Basic credentials); '' for none. */
  auth?: string;
  /** Top-level YAML added to the configuration (e.g. `registries:` and `mirror:`). */
  top?: string;
  /** Environment variables the configuration may interpolate, besides GIT_PASSWORD. */
  env?: Record<string, string>;
}

/** Builds a bare repository on the server, a store and a syncer configured for it. */
export function syncFixture(server: GitServer, options: SyncFixtureOptions) {
  const dir = tempDir('iu-sync-');
  const name = `gitops-${path.basename(dir)}`;
  const bare = createRepository(server, name, options.files);
  // Port 0: a service started on this configuration listens on a free port, never a fixed one.
  const text = `server: { port: 0 }
database: { path: ${path.join(dir, 'db.sqlite')} }
log: { level: debug }
syncer:
${Object.entries({ workDir: path.join(dir, 'work'), quietWindow: '0', retryInitial: '10ms', retryMax: '50ms', ...options.syncer })
  .map(([k, v]) => `  ${k}: ${v}`)
  .join('\n')}
repositories:
  - name: gitops
    url: ${options.url ? options.url(bare, server.url(name)) : server.url(name)}
${options.auth === '' ? '' : `    auth: ${options.auth ?? `{ username: ${GIT_USER}, password: "\${GIT_PASSWORD}" }`}`}
${options.repository ?? ''}
${options.top ?? ''}
${tokensYaml({ gitopsOnly: true })}`;
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, text);
  const config = parseConfig(text, file, { GIT_PASSWORD, ...options.env });
  const logs: string[] = [];
  const log = createLogger('debug', new Writable({ write: (c, _e, done) => (logs.push(String(c)), done()) }));
  const store = openStore(config.database.path, { synchronous: 'full' });
  const records = createSyncRecords(store.db);
  const loop = createSyncLoop({ config, records, log });

  const request = (image: string, tag: string, extra: Partial<UpdateRequest> = {}) => ({
    repository: 'gitops',
    branch: 'main',
    image,
    keyword: KEYWORD,
    tag,
    digest: null,
    ...extra,
  });

  return {
    dir,
    bare,
    config,
    configFile: file,
    store,
    loop,
    logs,
    /** The logger the syncer writes `logs` with. */
    logger: log,
    request,
    /** Records updates as one request (one batch), like POST /v1/images. */
    async want(...updates: UpdateRequest[]) {
      return store.recordUpdates(updates, { requestedBy: 'ci', at: Date.now(), batchId: updates.length > 1 ? 'batch' : null, traceparent: null });
    },
    target(image: string) {
      return store.listTargets({ image, limit: 10 }, null).targets[0]!;
    },
    /** Commit subjects on the remote branch, newest first. */
    log(): string[] {
      return git(bare, 'log', '--format=%s', 'main').trim().split('\n');
    },
    show(file: string, rev = 'main'): string {
      return git(bare, 'show', `${rev}:${file}`);
    },
  };
}
