// `image-updater notify`, the real CLI, against the real service (the CLI again, with
// its syncer and a real git server), as a CI job would run it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { NOTIFY_OPTIONS } from '../../bin/notify.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, startService, type Service } from '../helpers/cli.ts';
import { git, GIT_PASSWORD, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { freePort } from '../helpers/registry.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';
import { TOKENS } from '../helpers/tokens.ts';

let server: GitServer;
const running: Service[] = [];
beforeAll(async () => {
  server = await startGitServer();
});
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await server.close();
});

/** Runs `image-updater notify` asynchronously (the git server lives in this process and must keep answering). */
function notify(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'notify', ...args], { env: { ...process.env, IMAGE_UPDATER_TOKEN: TOKENS.ci, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function service(options: Parameters<typeof syncFixture>[1]) {
  const f = syncFixture(server, options);
  const s = await startService(f.configFile, 'serve', { GIT_PASSWORD });
  running.push(s);
  return { f, url: s.url };
}

const files = {
  'apps/web.yaml': `image: gcr.io/acme/web:1.0 # ${KEYWORD}\n`,
  'apps/api.yaml': `image: gcr.io/acme/api:1.0\n`,
};

describe('image-updater notify', () => {
  it('sends the update and prints what the server accepted', async () => {
    const { f, url } = await service({ files });
    const r = await notify(['--server', url, '--image', 'gcr.io/acme/web', '--tag', '1.1', '--keyword', KEYWORD]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^accepted: gcr\.io\/acme\/web:1\.1 \(image-automation-prod\) for gitops@main: target \d+, created\n$/);
    expect(f.target('gcr.io/acme/web').desiredTag).toBe('1.1');
  });

  it('exits 1 with the server’s code and message when the update is refused', async () => {
    const { url } = await service({ files });
    const mutable = await notify(['--server', url, '--image', 'gcr.io/acme/web', '--tag', 'latest', '--keyword', KEYWORD]);
    expect(mutable.code).toBe(1);
    expect(mutable.stderr).toMatch(/^image-updater notify: the server refused the update: 400 MUTABLE_TAG: .*latest.* \(field tag\)\n$/);
    const wrongToken = await notify(['--server', url, '--image', 'gcr.io/acme/web', '--tag', '1.2', '--keyword', KEYWORD], { IMAGE_UPDATER_TOKEN: 'iu_not-a-real-token' });
    expect(wrongToken).toMatchObject({ code: 1, stderr: expect.stringContaining('401 UNAUTHENTICATED: the token is not valid') });
    expect(wrongToken.stdout + wrongToken.stderr).not.toContain('iu_not-a-real-token');
  });

  it('--wait follows the update to its commit', async () => {
    const { f, url } = await service({ files });
    const r = await notify(['--server', url, '--image', 'gcr.io/acme/web', '--tag', '2.0', '--keyword', KEYWORD, '--wait']);
    expect(r, r.stderr).toMatchObject({ code: 0 });
    const sha = git(f.bare, 'rev-parse', 'main').trim();
    expect(r.stdout.trim().split('\n').pop()).toBe(`synced: gcr.io/acme/web:2.0 in commit ${sha}`);
    expect(f.show('apps/web.yaml')).toContain('gcr.io/acme/web:2.0');
  });

  it('--wait exits 1 with the code and reason when the update fails', async () => {
    const { url } = await service({ files });
    const r = await notify(['--server', url, '--image', 'gcr.io/acme/api', '--tag', '2.0', '--keyword', KEYWORD, '--wait']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^image-updater notify: failed: MARKER_NOT_FOUND: no line in gitops \(branch main\) marks image gcr\.io\/acme\/api/);
  });

  it('--wait gives up at --timeout, saying where the update stands', async () => {
    // A repository that cannot be reached: the target stays pending, retrying.
    const { url } = await service({ files, url: () => `http://127.0.0.1:${1}/nowhere.git`, auth: '' });
    const r = await notify(['--server', url, '--image', 'gcr.io/acme/web', '--tag', '3.0', '--keyword', KEYWORD, '--wait', '--timeout', '2s']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^image-updater notify: timed out after 2s: target \d+ is still pending/);
  });

  it('retries a server it cannot reach, then exits 1 naming it', async () => {
    const port = await freePort();
    const r = await notify(['--server', `http://127.0.0.1:${port}`, '--image', 'gcr.io/acme/web', '--tag', '1.0', '--keyword', KEYWORD]);
    expect(r.code).toBe(1);
    expect(r.stderr.match(/trying again/g)).toHaveLength(3);
    expect(r.stderr).toContain(`image-updater notify: cannot reach http://127.0.0.1:${port}`);
  });

  it('refuses bad usage with exit 2 and every problem named', async () => {
    const r = await notify(['--server', 'ftp://x', '--tag', '1.0', '--timeout', 'soon'], { IMAGE_UPDATER_TOKEN: '' });
    expect(r.code).toBe(2);
    for (const problem of ['--server must be an http:// or https:// URL', '--image is required', '--keyword is required', 'IMAGE_UPDATER_TOKEN is not set', '--timeout must be a duration']) {
      expect(r.stderr).toContain(problem);
    }
  });
});

describe('the CI examples', () => {
  it.each(['examples/circleci/config.yml', 'examples/github-actions/deploy.yml'])('%s is valid YAML whose notify call the CLI accepts', (file) => {
    const text = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
    expect(() => parseYaml(text)).not.toThrow();
    const call = /image-updater notify([\s\S]*?)(?:\n\s*\n|\n\S|\n\s+- |$)/.exec(text)?.[1];
    expect(call).toBeDefined();
    // Each quoted or templated value (`"$(cat digest.txt)"`, `${{ needs.build.outputs.tag }}`) is one argument.
    const args = call!
      .replace(/\\\n/g, ' ')
      .replace(/\$\{\{[^}]*\}\}|"[^"]*"/g, 'VALUE')
      .split(/\s+/)
      .filter(Boolean);
    const { values } = parseArgs({ args, options: NOTIFY_OPTIONS, strict: true, allowPositionals: false });
    expect(values).toMatchObject({ image: expect.any(String), tag: expect.any(String), keyword: 'image-automation-prod', wait: true, timeout: '10m' });
  });
});
