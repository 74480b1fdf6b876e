// `npm start`: runs the service on the bundled demo configuration and prints
// a request to paste. IMAGE_UPDATER_CONFIG may point at another file.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../bin/commands.ts';
import { seedDemoRepository } from './seed.ts';

/** The demo's token; its hash is in demo/config.yaml. It grants nothing beyond this loopback demo. */
export const DEMO_TOKEN = 'demo-token-for-local-use-only';

const demoDir = path.dirname(fileURLToPath(import.meta.url));
const configFile = process.env.IMAGE_UPDATER_CONFIG ?? path.join(demoDir, 'config.yaml');
const gitops = path.join(demoDir, 'data', 'gitops.git');
if (!process.env.IMAGE_UPDATER_CONFIG && seedDemoRepository(gitops)) {
  process.stderr.write(`Created the demo GitOps repository ${path.relative(process.cwd(), gitops)}\n`);
}

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

Then see the target (status "synced" a moment later) and the commit that carried it:

  curl -sS http://${host}:${port}/v1/images -H 'Authorization: Bearer ${DEMO_TOKEN}'
  git --git-dir ${path.relative(process.cwd(), gitops)} log -p -1

Stop with Ctrl-C.

`);
  },
});
