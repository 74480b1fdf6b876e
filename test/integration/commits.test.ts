// What the commits look like: the message template, and ssh signatures that
// `git verify-commit` accepts (real git, real ssh-keygen, the real git server).
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/app.ts';
import { git, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';

let server: GitServer;
beforeAll(async () => {
  server = await startGitServer();
});
afterAll(async () => {
  await server.close();
});

const files = {
  'apps/web.yaml': `image: gcr.io/acme/web:1.0 # ${KEYWORD}\n`,
  'apps/api.yaml': `image: gcr.io/acme/api:1.0 # ${KEYWORD}\n`,
};

/** A new ed25519 key pair, and an allowed-signers file naming the syncer's author. */
function signingKey() {
  const dir = tempDir('iu-signing-');
  const key = path.join(dir, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'image-updater', '-f', key]);
  const allowed = path.join(dir, 'allowed_signers');
  execFileSync('sh', ['-c', `printf 'image-updater@localhost namespaces="git" %s\\n' "$(cat "$1")" > "$2"`, 'sh', `${key}.pub`, allowed]);
  return { key, allowed, privateKey: readFileSync(key, 'utf8') };
}

const verify = (bare: string, allowed: string, rev = 'main') =>
  execFileSync('git', ['-c', `gpg.ssh.allowedSignersFile=${allowed}`, 'verify-commit', rev], { cwd: bare, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('commits', () => {
  it('use the repository’s message template', async () => {
    const f = syncFixture(server, {
      files,
      repository: `    commitMessage:
      subject: "chore(deploy): {{count}} image(s) to {{repository}}/{{branch}} [{{keywords}}]"
      body: "{{changes}}\\n\\nImages: {{images}}\\nReleased-by: image-updater"`,
    });
    await f.want(f.request('gcr.io/acme/web', '2.0'), f.request('gcr.io/acme/api', '2.1'));
    await f.loop.once();
    expect(git(f.bare, 'log', '-1', '--format=%B', 'main')).toBe(
      'chore(deploy): 2 image(s) to gitops/main [image-automation-prod]\n\ngcr.io/acme/api 1.0 → 2.1\ngcr.io/acme/web 1.0 → 2.0\n\nImages: gcr.io/acme/api, gcr.io/acme/web\nReleased-by: image-updater\n\n',
    );
  });

  it('are signed with an ssh key file, and git verify-commit accepts them', async () => {
    const { key, allowed } = signingKey();
    const f = syncFixture(server, { files, repository: `    signing: { sshKeyFile: ${key} }` });
    await f.want(f.request('gcr.io/acme/web', '3.0'));
    await f.loop.once();
    expect(verify(f.bare, allowed)).toBe('');
    // An unsigned commit fails the same check: the test can tell the difference.
    expect(() => verify(f.bare, allowed, 'main~1')).toThrow();
  });

  it('are signed with a key given in the configuration, kept owner-only outside the working copy and out of the logs', async () => {
    const { allowed, privateKey } = signingKey();
    const f = syncFixture(server, { files, repository: '    signing: { sshKey: "${SIGNING_KEY}" }', env: { SIGNING_KEY: privateKey } });
    await f.want(f.request('gcr.io/acme/web', '4.0'));
    await f.loop.once();
    expect(verify(f.bare, allowed)).toBe('');
    const written = path.join(f.config.syncer.workDir, '.home', 'signing', 'gitops.key');
    expect(statSync(written).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(written)).mode & 0o777).toBe(0o700);
    const keyBody = privateKey.split('\n')[1]!;
    expect(f.logs.join('\n')).not.toContain(keyBody);
    expect(git(f.bare, 'log', '-p', '--all')).not.toContain(keyBody);
  });
});
