// Creates the demo's GitOps repository (a bare repository with YAML and
// jsonnet manifests carrying keyword comments) when it does not exist yet.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const FILES: Record<string, string> = {
  'clusters/prod/demo-app.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo-app
  namespace: prod
spec:
  replicas: 2
  selector:
    matchLabels: { app: demo-app }
  template:
    metadata:
      labels: { app: demo-app }
    spec:
      containers:
        - name: demo-app
          image: gcr.io/demo-gcr/demo-app:0.0.1 # image-automation-prod
        - name: worker
          # Not the same image: demo-app-worker is never touched by an update of demo-app.
          image: gcr.io/demo-gcr/demo-app-worker:0.0.1 # image-automation-prod
`,
  'clusters/staging/demo-app.yaml': `apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo-app
  namespace: staging
spec:
  template:
    spec:
      containers:
        - name: demo-app
          image: gcr.io/demo-gcr/demo-app:0.0.1 # image-automation-staging
`,
  'environments/prod.jsonnet': `local prod_image = 'gcr.io/demo-gcr/demo-app:0.0.1'; // image-automation-prod

{
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'demo-app-release', namespace: 'prod' },
  data: { image: prod_image },
}
`,
  'README.md': '# Demo GitOps repository\n\nManaged by image-updater: lines ending with `# image-automation-prod` follow the prod tag.\n',
};

/** Ensures the bare repository exists at `bare`; returns true when it was created. */
export function seedDemoRepository(bare: string): boolean {
  if (existsSync(path.join(bare, 'HEAD'))) return false;
  const work = mkdtempSync(path.join(tmpdir(), 'image-updater-demo-'));
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: work,
      stdio: 'ignore',
      env: { PATH: process.env.PATH, HOME: work, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'demo', GIT_AUTHOR_EMAIL: 'demo@example.com', GIT_COMMITTER_NAME: 'demo', GIT_COMMITTER_EMAIL: 'demo@example.com' },
    });
  try {
    git('init', '-q', '-b', 'main');
    for (const [file, content] of Object.entries(FILES)) {
      mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
      writeFileSync(path.join(work, file), content);
    }
    git('add', '-A');
    git('commit', '-q', '-m', 'Demo manifests');
    mkdirSync(path.dirname(bare), { recursive: true });
    git('clone', '-q', '--bare', work, bare);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return true;
}
