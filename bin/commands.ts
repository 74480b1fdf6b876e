// The CLI's commands, as functions returning an exit code, so that the demo
// and the tests start the service exactly as an operator does.
import type { AddressInfo } from 'node:net';
import { runServer } from '../server/main.ts';
import { runMetricsServer } from '../server/metrics-server.ts';
import { generateToken, hashToken } from '../server/auth.ts';
import { backupDatabase } from '../shared/backup.ts';
import type { Config } from '../shared/config.ts';
import { ConfigError, loadConfig } from '../shared/config-file.ts';
import { createLogger, redactUrl, type Logger } from '../shared/log.ts';
import { setTargetSource } from '../shared/metrics.ts';
import { startTracing, type Tracing } from '../shared/telemetry.ts';
import { openStore, type Store } from '../shared/store.ts';
import { createSyncRecords } from '../shared/sync-records.ts';
import { createSyncLoop } from '../syncer/loop.ts';
import { missingTools } from '../syncer/preflight.ts';

export interface CommandOptions {
  configFile: string | undefined;
  tokenName: string;
  usage: string;
  once?: boolean;
  dryRun?: boolean;
  /** For `backup`: the file to write. */
  to?: string;
  /** Called when the server listens (the demo prints its curl here). */
  onListening?: (address: AddressInfo, config: Config) => void;
}

/** Loads the configuration, or prints every problem and returns undefined. */
function configOrReport(file: string | undefined): Config | undefined {
  if (!file) {
    process.stderr.write('image-updater: no configuration: pass --config FILE or set IMAGE_UPDATER_CONFIG\n');
    return undefined;
  }
  try {
    return loadConfig(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`image-updater: ${err.message}\n`);
    return undefined;
  }
}

/** Opens the store, or logs why it cannot (e.g. a database written by a newer version) and returns undefined. */
function openStoreOrReport(config: Config, log: Logger): Store | undefined {
  try {
    return openStore(config.database.path, { synchronous: config.database.synchronous });
  } catch (err) {
    log.fatal({ path: config.database.path, reason: (err as Error).message }, 'cannot open the database');
    log.flush();
    return undefined;
  }
}

function printToken(name: string): number {
  const token = generateToken();
  process.stdout.write(`Token (give it to CI as IMAGE_UPDATER_TOKEN; it is stored nowhere and shown only now):

  ${token}

Config entry, to add under "tokens:" (narrow the patterns to what this client needs):

  - name: ${name}
    sha256: ${hashToken(token)}
    repositories: ["*"]
    images: ["**"]
    keywords: ["*"]
`);
  return 0;
}

/** Runs the API server, the syncer, or both, until SIGTERM or SIGINT. */
async function serve(config: Config, options: CommandOptions, roles: { server: boolean; syncer: boolean }): Promise<number> {
  const log = createLogger(config.log.level);
  if (roles.syncer) {
    const missing = await missingTools();
    for (const tool of missing.filter((t) => !t.required)) {
      log.warn({ command: tool.command }, `${tool.command} is not installed: edits of files that need it will fail validation (apt-get install ${tool.package})`);
    }
    const required = missing.filter((t) => t.required);
    if (required.length > 0) {
      log.fatal({ missing: required.map((t) => t.command) }, `the syncer needs ${required.map((t) => t.command).join(' and ')} on PATH (apt-get install ${required.map((t) => t.package).join(' ')})`);
      log.flush();
      return 1;
    }
  }
  const store = openStoreOrReport(config, log);
  if (!store) return 1;
  setTargetSource(store);
  const tracing = await startTracingOrReport(log);
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'signal received');
    controller.abort();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const loop = roles.syncer ? createSyncLoop({ config, records: createSyncRecords(store.db), log }) : undefined;
  let code = 0;
  try {
    await Promise.all([
      roles.server
        ? runServer({
            config,
            store,
            log,
            signal: controller.signal,
            onRecorded: () => loop?.notify(),
            onListening: (address) => options.onListening?.(address, config),
          }).catch((err: NodeJS.ErrnoException) => {
            log.fatal({ host: config.server.host, port: config.server.port, code: err.code }, `cannot listen: ${err.message}`);
            code = 1;
            controller.abort();
          })
        : roles.syncer && config.syncer.metricsPort !== undefined
          ? runMetricsServer({ host: config.server.host, port: config.syncer.metricsPort, log, signal: controller.signal }).catch((err: NodeJS.ErrnoException) => {
              log.fatal({ host: config.server.host, port: config.syncer.metricsPort, code: err.code }, `cannot listen: ${err.message}`);
              code = 1;
              controller.abort();
            })
          : undefined,
      loop?.run(controller.signal),
    ]);
  } finally {
    setTargetSource(undefined);
    await store.close();
    // Spans still buffered are exported before the process ends.
    await tracing?.shutdown();
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
  log.info('stopped');
  log.flush();
  return code;
}

/** Starts exporting traces when the OTEL_* variables ask for it; says where they go. */
async function startTracingOrReport(log: Logger): Promise<Tracing | undefined> {
  const tracing = await startTracing(process.env, (reason) => log.warn({ reason }, 'could not export the last traces'));
  if (tracing) {
    log.info({ endpoint: redactUrl(process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '(default)'), protocol: process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf' }, 'exporting traces over OTLP');
  }
  return tracing;
}

/** `sync --once [--dry-run]`: one pass over every pending target; prints the diffs of a dry run. */
async function syncOnce(config: Config, options: CommandOptions): Promise<number> {
  const log = createLogger(config.log.level);
  const store = openStoreOrReport(config, log);
  if (!store) return 1;
  const tracing = await startTracingOrReport(log);
  try {
    const loop = createSyncLoop({ config, records: createSyncRecords(store.db), log });
    const results = await loop.once({ dryRun: options.dryRun ?? false });
    let failed = 0;
    for (const r of results) {
      if (r.diff) process.stdout.write(r.diff);
      for (const t of r.results) {
        if (t.kind !== 'synced' && t.kind !== 'proposed') failed++;
        const what =
          t.kind === 'synced'
            ? t.committed
              ? `committed ${t.commit.slice(0, 12)}`
              : 'already at tag'
            : t.kind === 'waiting'
              ? `awaiting mirror: ${t.message}`
              : t.kind === 'proposed'
                ? `proposed in ${t.url}`
                : `${t.kind === 'retry' ? 'will retry' : 'failed'}: ${t.error.code}: ${t.error.message}`;
        process.stderr.write(`${r.repository}@${r.branch} ${t.target.image}:${t.target.desiredTag} (${t.target.keyword}): ${options.dryRun && t.kind === 'synced' ? 'would be synced' : what}\n`);
      }
    }
    if (results.length === 0) process.stderr.write('nothing pending\n');
    return failed > 0 ? 1 : 0;
  } finally {
    await store.close();
    await tracing?.shutdown();
    log.flush();
  }
}

/** Writes a verified copy of the database, while the service runs. */
async function backup(config: Config, to: string | undefined): Promise<number> {
  if (!to) {
    process.stderr.write('image-updater: "backup" needs --to FILE (a new file)\n');
    return 2;
  }
  try {
    const done = await backupDatabase(config.database.path, to);
    process.stdout.write(
      `${done.file}: ${done.bytes} bytes, ${done.targets} targets, ${done.events} events, migration ${done.migration ?? 'none'}; integrity ok\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`image-updater: backup failed: ${(err as Error).message}\n`);
    return 1;
  }
}

/** Runs one command; resolves to the process exit code. */
export async function runCommand(command: string, options: CommandOptions): Promise<number> {
  if (command === 'token') return printToken(options.tokenName);
  if (!['serve', 'server', 'syncer', 'sync', 'migrate', 'check', 'backup'].includes(command)) {
    process.stderr.write(`image-updater: unknown command "${command}"\n\n${options.usage}`);
    return 2;
  }
  const config = configOrReport(options.configFile);
  if (!config) return 2;
  switch (command) {
    case 'check':
      process.stdout.write(`${config.file}: valid (${config.repositories.length} repositories, ${config.tokens.length} tokens)\n`);
      return 0;
    case 'migrate': {
      const store = openStoreOrReport(config, createLogger(config.log.level));
      if (!store) return 1;
      await store.close();
      const applied = store.appliedMigrations;
      process.stdout.write(`${config.database.path}: ${applied.length ? `applied ${applied.join(', ')}` : 'up to date'}\n`);
      return 0;
    }
    case 'backup':
      return backup(config, options.to);
    case 'sync':
      if (!options.once) {
        process.stderr.write('image-updater: "sync" needs --once (the continuous syncer is "image-updater syncer")\n');
        return 2;
      }
      return syncOnce(config, options);
    case 'server':
      return serve(config, options, { server: true, syncer: false });
    case 'syncer':
      return serve(config, options, { server: false, syncer: true });
    default:
      return serve(config, options, { server: true, syncer: true });
  }
}
