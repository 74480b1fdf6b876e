// `npm start`: runs the service on the bundled demo configuration and prints
// a request to paste. IMAGE_UPDATER_CONFIG may point at another file.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../bin/commands.ts';

/** The demo's token; its hash is in demo/config.yaml. It grants nothing beyond this loopback demo. */
export const DEMO_TOKEN = 'demo-token-for-local-use-only';

const configFile = process.env.IMAGE_UPDATER_CONFIG ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'config.yaml');

process.exitCode = await runCommand('serve', {
  configFile,
  tokenName: 'demo',
  usage: '',
  onListening: ({ port }, config) => {
    const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
    const repository = config.repositories[0]!.name;
    process.stderr.write(`
image-updater is listening on http://${host}:${port}. Ask it to deploy a tag:

  curl -sS -X POST http://${host}:${port}/v1/images \\
    -H 'Authorization: Bearer ${DEMO_TOKEN}' -H 'Content-Type: application/json' \\
    -d '{"repository": "${repository}", "image": "gcr.io/demo-gcr/demo-app", "tag": "0.0.2", "keyword": "image-automation-prod"}'

Then see what it recorded:

  curl -sS http://${host}:${port}/v1/images -H 'Authorization: Bearer ${DEMO_TOKEN}'

Stop with Ctrl-C.

`);
  },
});
