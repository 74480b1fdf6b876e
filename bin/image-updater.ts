#!/usr/bin/env -S node --max-semi-space-size=8 --max-old-space-size=128
// The image-updater command line: one entry point for every process role.
//
// Memory: V8's defaults on a large machine collect lazily, and a release of 1,000 images
// peaked at 290 MB RSS. The young generation drives that peak: 8 MB semi-spaces and a
// 128 MB old generation keep it at 167-179 MB. A 2 MB young generation went lower but
// cost the API a third of its throughput at concurrency 32 (npm run bench, side by side).
// For far larger releases, start it with `node --max-old-space-size=512 bin/image-updater.ts …`.
import { parseArgs } from 'node:util';
import { runCommand } from './commands.ts';
import { notify } from './notify.ts';

const USAGE = `usage: image-updater <command> [--config FILE]

commands:
  serve          run the service: the API server and the syncer in one process
  server         run the API server only (a separate "syncer" polls the database)
  syncer         run the syncer only
  sync --once    sync every pending target once, then exit (--dry-run: print the diff, push nothing)
  migrate        apply database migrations, then exit
  check          validate the configuration, then exit
  backup --to F  write a verified copy of the database to the new file F (safe while the service runs)
  token          print a new random token and the config entry holding its hash
  notify         for CI: send a desired tag to the server (see "image-updater notify --help")

options:
  -c, --config FILE   configuration file (default: $IMAGE_UPDATER_CONFIG)
  -n, --name NAME     token name, for "token" (default: ci)
      --once          with "sync": one pass
      --dry-run       with "sync --once": change nothing, print the diff
      --to FILE       with "backup": the file to write
  -h, --help          show this help
`;

function main(): Promise<number> {
  // notify is a client with flags of its own and no configuration file.
  if (process.argv[2] === 'notify') {
    return notify(process.argv.slice(3), process.env, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
  }
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        name: { type: 'string', short: 'n' },
        once: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        to: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`image-updater: ${(err as Error).message}\n\n${USAGE}`);
    return Promise.resolve(2);
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help || !command) {
    (parsed.values.help ? process.stdout : process.stderr).write(USAGE);
    return Promise.resolve(parsed.values.help ? 0 : 2);
  }
  if (rest.length > 0) {
    process.stderr.write(`image-updater: unexpected argument "${rest[0]}"\n\n${USAGE}`);
    return Promise.resolve(2);
  }
  return runCommand(command, {
    configFile: parsed.values.config ?? process.env.IMAGE_UPDATER_CONFIG,
    tokenName: parsed.values.name ?? 'ci',
    once: parsed.values.once ?? false,
    dryRun: parsed.values['dry-run'] ?? false,
    ...(parsed.values.to === undefined ? {} : { to: parsed.values.to }),
    usage: USAGE,
  });
}

process.exitCode = await main();
