// The syncer against a real git server (git http-backend over HTTP with Basic
// auth), the real rg, jsonnet and SQLite.
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/app.ts';
import { git, GIT_PASSWORD, pushCompetingCommit, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { startSshServer } from '../helpers/ssh-server.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';
import { createSyncRecords } from '../../shared/sync-records.ts';

let server: GitServer;
beforeAll(async () => {
  server = await startGitServer();
});
afterAll(async () => {
  await server.close();
});

const deployment = (image: string, tag: string, extra = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${image.split('/').pop()}
spec:
  template:
    spec:
      containers:
        - name: app
          image: ${image}:${tag} # ${KEYWORD}
        - name: sidecar
          image: gcr.io/acme/sidecar:9.9.9
${extra}`;

describe('syncer', () => {
  it('lands 50 images as exactly one commit that touches only the marked lines', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 50; i++) files[`apps/app${i}/deploy.yaml`] = deployment(`gcr.io/acme/app${i}`, '1.0.0');
    files['apps/app0/staging.yaml'] = deployment('gcr.io/acme/app0', '1.0.0').replace(KEYWORD, 'image-automation-staging');
    const f = syncFixture(server, { files });
    await f.want(...Array.from({ length: 50 }, (_, i) => f.request(`gcr.io/acme/app${i}`, '2.0.0')));

    const [result] = await f.loop.once();
    expect(result!.commits).toHaveLength(1);
    expect(f.log()).toEqual(['Update 50 images (image-automation-prod)', 'initial']);
    const diff = git(f.bare, 'diff', '--unified=0', 'main~1', 'main');
    const removed = diff.split('\n').filter((l) => l.startsWith('-') && !l.startsWith('---'));
    const added = diff.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++'));
    expect(removed).toHaveLength(50);
    expect(added).toHaveLength(50);
    for (const line of added) expect(line).toMatch(new RegExp(`^\\+ {10}image: gcr\\.io/acme/app\\d+:2\\.0\\.0 # ${KEYWORD}$`));
    expect(f.show('apps/app0/staging.yaml')).toContain('gcr.io/acme/app0:1.0.0 # image-automation-staging');

    const sha = git(f.bare, 'rev-parse', 'main').trim();
    const targets = f.store.listTargets({ limit: 100 }, null).targets;
    expect(targets.every((t) => t.status === 'synced' && t.appliedTag === '2.0.0' && t.appliedCommit === sha)).toBe(true);
    const events = f.store.listEvents(targets[0]!.id).map((e) => e.type);
    expect(events).toEqual(['requested', 'committed', 'pushed', 'synced']);
    const commitRows = f.store.db.prepare('SELECT sha, mode, (SELECT count(*) FROM commit_targets WHERE commit_id = commits.id) AS n FROM commits').all();
    expect(commitRows).toEqual([{ sha, mode: 'batch', n: 50 }]);

    // Idempotent: a second pass finds nothing to do and makes no commit.
    await f.want(f.request('gcr.io/acme/app1', '2.0.0'));
    expect(await f.loop.once()).toEqual([]);
    expect(f.log()).toHaveLength(2);
  });

  it('isolates an update that breaks validation: the others land one commit each, the bad one fails with file and line', async () => {
    const f = syncFixture(server, {
      files: {
        'apps/api.yaml': deployment('gcr.io/acme/api', '1.0'),
        'apps/web.yaml': deployment('gcr.io/acme/web', '1.0'),
        // A policy in jsonnet: this image is pinned, so any other tag fails evaluation.
        'env/prod.jsonnet': `local pinned = 'gcr.io/acme/legacy:1.0'; // ${KEYWORD}\nassert std.endsWith(pinned, ':1.0') : 'legacy is pinned to 1.0';\n{ image: pinned }\n`,
      },
    });
    await f.want(f.request('gcr.io/acme/api', '1.1'), f.request('gcr.io/acme/web', '1.1'), f.request('gcr.io/acme/legacy', '2.0'));
    const [result] = await f.loop.once();
    expect(result!.commits.map((c) => c.mode)).toEqual(['single', 'single']);
    expect(f.log()).toEqual(['Update gcr.io/acme/web to 1.1 (image-automation-prod)', 'Update gcr.io/acme/api to 1.1 (image-automation-prod)', 'initial']);
    expect(f.show('apps/api.yaml')).toContain('gcr.io/acme/api:1.1');
    expect(f.show('env/prod.jsonnet')).toContain("'gcr.io/acme/legacy:1.0'");
    const legacy = f.target('gcr.io/acme/legacy');
    expect(legacy.status).toBe('failed');
    expect(legacy.lastErrorCode).toBe('VALIDATION_FAILED');
    expect(legacy.lastErrorMessage).toBe('env/prod.jsonnet:2:1: legacy is pinned to 1.0 (the edit leaves jsonnet that does not evaluate)');
    expect(f.target('gcr.io/acme/api').status).toBe('synced');
  });

  it('retries when another push lands between its fetch and its push: both commits stay, nothing is lost', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0'), 'README.md': 'hello\n' } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    server.beforeNextPush(() => pushCompetingCommit(f.bare, 'README.md', 'hello from a human\n'));
    const [result] = await f.loop.once();
    expect(result!.commits).toHaveLength(1);
    expect(f.log()).toEqual(['Update gcr.io/acme/api to 1.1 (image-automation-prod)', 'competing change to README.md', 'initial']);
    expect(f.show('README.md')).toBe('hello from a human\n');
    expect(f.show('apps/api.yaml')).toContain('gcr.io/acme/api:1.1');
    expect(f.target('gcr.io/acme/api').status).toBe('synced');
    expect(f.logs.join('')).toContain('push rejected: refetching');
  });

  it('keeps targets pending while the git server is down, and lands them once it is back', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    await server.stop();
    try {
      const [down] = await f.loop.once();
      expect(down!.results[0]).toMatchObject({ kind: 'retry', error: { code: 'GIT_UNAVAILABLE' } });
      const waiting = f.target('gcr.io/acme/api');
      expect(waiting).toMatchObject({ status: 'pending', lastErrorCode: 'GIT_UNAVAILABLE', attempts: 1 });
      expect(waiting.lastErrorMessage).toContain(`cannot reach http://127.0.0.1:${server.port}/`);
    } finally {
      await server.start();
    }
    await f.loop.once();
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'synced', appliedTag: '1.1', lastErrorCode: null });
    expect(f.show('apps/api.yaml')).toContain('gcr.io/acme/api:1.1');
  });

  it('holds a new tag while the git server is down rather than retrying per request; once a sync gets through, the held targets follow at once', async () => {
    const f = syncFixture(server, {
      files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0'), 'apps/web.yaml': deployment('gcr.io/acme/web', '1.0'), 'apps/db.yaml': deployment('gcr.io/acme/db', '1.0') },
      // Backoffs far longer than the test: anything that syncs does so because it was released, not because time passed.
      syncer: { retryInitial: '1h', retryMax: '2h' },
    });
    const records = createSyncRecords(f.store.db);
    await f.want(f.request('gcr.io/acme/api', '1.1'), f.request('gcr.io/acme/web', '1.1'));
    await server.stop();
    try {
      await f.loop.once();
      const failing = f.target('gcr.io/acme/api');
      expect(failing).toMatchObject({ status: 'pending', lastErrorCode: 'GIT_UNAVAILABLE', attempts: 1 });
      // One retry for the repository+branch, not one per target: it will be one sync.
      expect(f.target('gcr.io/acme/web').nextAttemptAt).toBe(failing.nextAttemptAt);

      // CI releases api again during the outage: the new tag is recorded and waits for the retry with the rest.
      const [accepted] = await f.want(f.request('gcr.io/acme/api', '1.2'));
      expect(accepted!.change).toBe('superseded');
      expect(f.target('gcr.io/acme/api')).toMatchObject({ desiredTag: '1.2', status: 'pending', attempts: 1, nextAttemptAt: failing.nextAttemptAt, lastErrorCode: 'GIT_UNAVAILABLE' });
      // A first release of another image joins the same retry, with the repository's failure as its reason.
      await f.want(f.request('gcr.io/acme/db', '2.0'));
      expect(f.target('gcr.io/acme/db')).toMatchObject({ status: 'pending', attempts: 0, nextAttemptAt: failing.nextAttemptAt, lastErrorCode: 'GIT_UNAVAILABLE', lastErrorMessage: failing.lastErrorMessage });
      expect(records.dueGroups(Date.now())).toEqual([]);
      const waits = `the repository is failing (GIT_UNAVAILABLE): waits for its next retry at ${new Date(failing.nextAttemptAt).toISOString()}`;
      expect(f.store.listEvents(failing.id).at(-1)).toMatchObject({ type: 'requested', tag: '1.2', message: waits });
      expect(f.store.listEvents(f.target('gcr.io/acme/db').id)).toMatchObject([{ type: 'requested', tag: '2.0', message: waits }]);
    } finally {
      await server.start();
    }

    // web alone becomes due (as its own retry time would make it) and gets through; api and db, held for up
    // to an hour, follow together in the next pass.
    f.store.db.prepare('UPDATE targets SET next_attempt_at = 0 WHERE image = ?').run('gcr.io/acme/web');
    const stop = new AbortController();
    const running = f.loop.run(stop.signal);
    try {
      for (let i = 0; i < 500 && f.target('gcr.io/acme/db').status !== 'synced'; i++) await new Promise((r) => setTimeout(r, 20));
    } finally {
      stop.abort();
      await running;
    }
    expect(f.target('gcr.io/acme/web')).toMatchObject({ status: 'synced', appliedTag: '1.1' });
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'synced', appliedTag: '1.2', lastErrorCode: null });
    expect(f.target('gcr.io/acme/db')).toMatchObject({ status: 'synced', appliedTag: '2.0', lastErrorCode: null });
    expect(f.log()).toEqual(['Update 2 images (image-automation-prod)', 'Update gcr.io/acme/web to 1.1 (image-automation-prod)', 'initial']);
  });

  it('holds the new tag of a target that was synced before the outage began', async () => {
    const f = syncFixture(server, {
      files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0'), 'apps/web.yaml': deployment('gcr.io/acme/web', '1.0') },
      syncer: { retryInitial: '1h', retryMax: '2h' },
    });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/api').status).toBe('synced');
    await f.want(f.request('gcr.io/acme/web', '1.1'));
    await server.stop();
    try {
      await f.loop.once();
      const failing = f.target('gcr.io/acme/web');
      expect(failing).toMatchObject({ status: 'pending', lastErrorCode: 'GIT_UNAVAILABLE' });
      await f.want(f.request('gcr.io/acme/api', '1.2'));
      expect(f.target('gcr.io/acme/api')).toMatchObject({ desiredTag: '1.2', status: 'pending', nextAttemptAt: failing.nextAttemptAt, lastErrorCode: 'GIT_UNAVAILABLE' });
      expect(createSyncRecords(f.store.db).dueGroups(Date.now())).toEqual([]);
    } finally {
      await server.start();
    }
  });

  it('marks a target synced without a second commit when its push landed but was never recorded', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    // The push lands; the process "dies" before recording: the outcome is dropped.
    const due = f.store.db.prepare("SELECT count(*) FROM targets WHERE status = 'pending'").pluck();
    const { syncRepository } = await import('../../syncer/sync-repository.ts');
    const { createSyncRecords } = await import('../../shared/sync-records.ts');
    const [group] = createSyncRecords(f.store.db).dueGroups(Date.now());
    const lost = await syncRepository({ config: f.config, log: (await import('../../shared/log.ts')).createLogger('silent'), now: Date.now }, f.config.repositories[0]!, 'main', group!.targets);
    expect(lost.commits).toHaveLength(1);
    expect(due.get()).toBe(1);
    // After the restart the next sync finds the file at the desired tag.
    await f.loop.once();
    expect(f.log()).toEqual(['Update gcr.io/acme/api to 1.1 (image-automation-prod)', 'initial']);
    const target = f.target('gcr.io/acme/api');
    expect(target).toMatchObject({ status: 'synced', appliedCommit: git(f.bare, 'rev-parse', 'main').trim() });
    expect(f.store.listEvents(target.id).at(-1)!.message).toMatch(/^already at 1\.1 in [0-9a-f]{12}$/);
  });

  it('never follows a symbolic link, not even one pointing outside the repository', async () => {
    const outside = path.join(tempDir('iu-outside-'), 'secret.yaml');
    writeFileSync(outside, `image: gcr.io/acme/api:1.0 # ${KEYWORD}\n`);
    const f = syncFixture(server, { files: { 'apps/real.yaml': deployment('gcr.io/acme/web', '1.0') } });
    // Add symbolic links (to a file and to a folder outside) in a commit of their own.
    const clone = tempDir('iu-links-');
    git(clone, 'clone', '-q', f.bare, '.');
    symlinkSync(outside, path.join(clone, 'apps/link.yaml'));
    symlinkSync(path.dirname(outside), path.join(clone, 'apps/outside-dir'));
    git(clone, 'add', '-A');
    git(clone, 'commit', '-q', '-m', 'links');
    git(clone, 'push', '-q', 'origin', 'HEAD:main');

    await f.want(f.request('gcr.io/acme/api', '2.0'), f.request('gcr.io/acme/web', '2.0'));
    await f.loop.once();
    expect(readFileSync(outside, 'utf8')).toBe(`image: gcr.io/acme/api:1.0 # ${KEYWORD}\n`);
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'failed', lastErrorCode: 'MARKER_NOT_FOUND' });
    expect(f.target('gcr.io/acme/web').status).toBe('synced');
  });

  it('fails a target with no marked line, saying what to add', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': 'image: gcr.io/acme/api:1.0\n' } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/api')).toMatchObject({
      status: 'failed',
      lastErrorCode: 'MARKER_NOT_FOUND',
      lastErrorMessage: `no line in gitops (branch main) marks image gcr.io/acme/api with keyword "${KEYWORD}": end the line that holds the image reference with "# ${KEYWORD}"`,
    });
    expect(f.log()).toEqual(['initial']);
  });

  it('keeps credentials out of .git/config, logs and errors; wrong ones fail with a clear message', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    await f.loop.once();
    const work = f.config.syncer.workDir;
    const gitConfig = readFileSync(path.join(work, 'gitops', 'main', '.git', 'config'), 'utf8');
    expect(gitConfig).not.toContain(GIT_PASSWORD);
    expect(gitConfig).not.toContain(Buffer.from(`bot:${GIT_PASSWORD}`).toString('base64'));
    expect(gitConfig).toContain(`url = ${server.url(path.basename(f.bare, '.git'))}`);

    const wrong = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    wrong.config.repositories[0]!.auth = { username: 'bot', password: 'wrong-password' };
    await wrong.want(wrong.request('gcr.io/acme/api', '1.1'));
    const [result] = await wrong.loop.once();
    expect(result!.results[0]).toMatchObject({ kind: 'retry', error: { code: 'GIT_AUTH_FAILED' } });
    const message = wrong.target('gcr.io/acme/api').lastErrorMessage!;
    expect(message).toMatch(/^the git server refused the credentials for http:\/\/127\.0\.0\.1:\d+\/gitops-[^ ]+\.git; check this repository's auth settings$/);
    for (const text of [message, ...f.logs, ...wrong.logs]) {
      expect(text).not.toContain(GIT_PASSWORD);
      expect(text).not.toContain('wrong-password');
    }
  });

  it('--dry-run shows the diff and pushes nothing', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    const [result] = await f.loop.once({ dryRun: true });
    expect(result!.diff).toContain(`-          image: gcr.io/acme/api:1.0 # ${KEYWORD}`);
    expect(result!.diff).toContain(`+          image: gcr.io/acme/api:1.1 # ${KEYWORD}`);
    expect(f.log()).toEqual(['initial']);
    expect(f.target('gcr.io/acme/api').status).toBe('pending');
  });

  it('does not mark a target synced when a newer tag arrived during the sync', async () => {
    const f = syncFixture(server, { files: { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') } });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    server.beforeNextPush(() => {
      void f.want(f.request('gcr.io/acme/api', '1.2'));
    });
    await f.loop.once();
    // The writer thread records 1.2 asynchronously; give it a moment to land.
    for (let i = 0; i < 50 && f.target('gcr.io/acme/api').desiredTag !== '1.2'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'pending', desiredTag: '1.2' });
    await f.loop.once();
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'synced', appliedTag: '1.2' });
    expect(f.log()).toHaveLength(3);
    expect(existsSync(path.join(f.config.syncer.workDir, 'gitops', 'main.partial'))).toBe(false);
  });
});

describe('marker index across syncs', () => {
  it('finds markers that later commits add, exactly as a full search would', async () => {
    const f = syncFixture(server, {
      files: {
        'apps/api.yaml': deployment('gcr.io/acme/api', '1.0'),
        'apps/notes.txt': 'nothing here\n',
        'apps/web.yaml': 'kind: ConfigMap\n',
      },
    });
    await f.want(f.request('gcr.io/acme/api', '1.1'));
    await f.loop.once();
    const modes = () => f.logs.filter((l) => l.includes('"sync finished"')).map((l) => (JSON.parse(l) as { search: string }).search);
    expect(modes()).toEqual(['full']);

    // A human marks a line in an existing file: found by rescanning just that file.
    pushCompetingCommit(f.bare, 'apps/web.yaml', `kind: ConfigMap\nimage: gcr.io/acme/web:1.0 # ${KEYWORD}\n`);
    await f.want(f.request('gcr.io/acme/web', '2.0'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/web').status).toBe('synced');
    expect(f.show('apps/web.yaml')).toContain(`gcr.io/acme/web:2.0 # ${KEYWORD}`);

    // A new file: the index cannot judge its path, so the search is a full one again.
    pushCompetingCommit(f.bare, 'apps/new/job.yaml', `image: gcr.io/acme/job:1.0 # ${KEYWORD}\n`);
    await f.want(f.request('gcr.io/acme/job', '2.0'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/job').status).toBe('synced');

    // A marker in a file outside the include globs is not found, incremental or not.
    pushCompetingCommit(f.bare, 'apps/notes.txt', `image: gcr.io/acme/doc:1.0 # ${KEYWORD}\n`);
    await f.want(f.request('gcr.io/acme/doc', '2.0'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/doc')).toMatchObject({ status: 'failed', lastErrorCode: 'MARKER_NOT_FOUND' });

    expect(modes()).toEqual(['full', 'incremental', 'full', 'incremental']);
    expect(f.log()).toHaveLength(7);
  });
});

describe('parseNameStatus', () => {
  it('reads git diff --name-status -z output, odd names included', async () => {
    const { parseNameStatus } = await import('../../syncer/marker-index.ts');
    expect(parseNameStatus('M\0apps/a b.yaml\0D\0old.yaml\0A\0new\nline.yaml\0')).toEqual([
      { status: 'M', path: 'apps/a b.yaml' },
      { status: 'D', path: 'old.yaml' },
      { status: 'A', path: 'new\nline.yaml' },
    ]);
    expect(parseNameStatus('')).toEqual([]);
  });
});

describe('repository URLs', () => {
  const files = { 'apps/api.yaml': deployment('gcr.io/acme/api', '1.0') };

  it('syncs over ssh with the key from the config, checking the pinned host key', async () => {
    const ssh = await startSshServer();
    try {
      const f = syncFixture(server, {
        files,
        url: (bare) => `ssh://root@127.0.0.1:${ssh.port}${bare}`,
        auth: `{ sshKeyFile: ${ssh.keyFile}, knownHostsFile: ${ssh.knownHostsFile} }`,
      });
      await f.want(f.request('gcr.io/acme/api', '1.1'));
      await f.loop.once();
      expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'synced', appliedTag: '1.1' });
      expect(f.show('apps/api.yaml')).toContain('gcr.io/acme/api:1.1');

      // A host key that does not match the pinned one is refused.
      const wrongHosts = path.join(tempDir('iu-kh-'), 'known_hosts');
      writeFileSync(wrongHosts, `[127.0.0.1]:${ssh.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n`);
      const g = syncFixture(server, {
        files,
        url: (bare) => `ssh://root@127.0.0.1:${ssh.port}${bare}`,
        auth: `{ sshKeyFile: ${ssh.keyFile}, knownHostsFile: ${wrongHosts} }`,
      });
      await g.want(g.request('gcr.io/acme/api', '1.1'));
      await g.loop.once();
      expect(g.target('gcr.io/acme/api')).toMatchObject({ status: 'pending', lastErrorCode: 'GIT_AUTH_FAILED' });
      expect(g.target('gcr.io/acme/api').lastErrorMessage).toMatch(/^the ssh host key of ssh:\/\/\*\*\*@127\.0\.0\.1:\d+\/.* does not match the known host key/);
    } finally {
      ssh.close();
    }
  });

  it('syncs a file:// URL and a plain local path', async () => {
    for (const url of [(bare: string) => `file://${bare}`, (bare: string) => bare]) {
      const f = syncFixture(server, { files, url, auth: '' });
      await f.want(f.request('gcr.io/acme/api', '1.1'));
      await f.loop.once();
      expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'synced', appliedTag: '1.1' });
      expect(f.show('apps/api.yaml')).toContain('gcr.io/acme/api:1.1');
    }
  });
});
