// Pull-request write-back end to end: the branch is pushed to the real test git
// server, and the GitHub REST calls go to a stand-in that follows GitHub's
// documented shapes and checks the branch on the git server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { git, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { startGitHubStandin } from '../helpers/github-standin.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';

const GITHUB_TOKEN = 'ghp_standinToken0123456789abcdef';
let server: GitServer;
const standins: Array<{ stop(): Promise<void> }> = [];
beforeAll(async () => {
  server = await startGitServer();
});
afterAll(async () => {
  await Promise.all(standins.map((s) => s.stop()));
  await server.close();
});

const files = {
  'apps/web.yaml': `image: gcr.io/acme/web:1.0 # ${KEYWORD}\n`,
  'apps/api.yaml': `image: gcr.io/acme/api:1.0 # ${KEYWORD}\n`,
};

/** A repository in pull-request mode, with the GitHub stand-in whose git side is the fixture's bare repository. */
async function prFixture(token = GITHUB_TOKEN, extraFiles: Record<string, string> = {}) {
  const github = await startGitHubStandin({ owner: 'acme', repo: 'gitops', token: GITHUB_TOKEN });
  standins.push(github);
  const f = syncFixture(server, {
    files: { ...files, ...extraFiles },
    repository: `    writeBack: pull-request
    pullRequest:
      github: { apiUrl: "${github.apiUrl}", token: "\${GITHUB_TOKEN}", repository: acme/gitops }
      labels: [deploy, automated]
      reviewers: [alice]
      pollInterval: 10ms`,
    env: { GITHUB_TOKEN: token },
  });
  github.useRepository(f.bare);
  const branchHead = () => git(f.bare, 'rev-parse', 'refs/heads/image-updater/main').trim();
  const onBranch = (file: string) => git(f.bare, 'show', `image-updater/main:${file}`);
  return { f, github, branchHead, onBranch };
}

describe('pull-request write-back', () => {
  it('opens one pull request for a release, then updates it with the next one, always on top of the latest base', async () => {
    const { f, github, branchHead, onBranch } = await prFixture();
    await f.want(f.request('gcr.io/acme/web', '2.0'));
    await f.loop.once();

    expect(f.log()).toEqual(['initial']); // nothing pushed to main
    expect(github.pulls).toHaveLength(1);
    const pull = github.pulls[0]!;
    expect(pull).toMatchObject({ number: 1, state: 'open', title: 'Update gcr.io/acme/web to 2.0 (image-automation-prod)', base: { ref: 'main' }, head: { ref: 'image-updater/main', sha: branchHead() } });
    expect(pull.labels).toEqual(['deploy', 'automated']);
    expect(pull.requested_reviewers).toEqual(['alice']);
    expect(pull.body).toContain('| `gcr.io/acme/web` | `1.0` | `2.0` | `image-automation-prod` |');
    expect(onBranch('apps/web.yaml')).toBe(`image: gcr.io/acme/web:2.0 # ${KEYWORD}\n`);
    const web = f.target('gcr.io/acme/web');
    expect(web).toMatchObject({ status: 'proposed', proposalNumber: 1, proposalUrl: 'https://github.example/acme/gitops/pull/1', appliedTag: null });
    expect(f.store.listEvents(web.id).map((e) => e.type)).toEqual(['requested', 'proposed']);

    // Meanwhile someone changes main; the next release joins the same pull request, rebuilt on the new main.
    github.pushToBase('README.md', 'changed by a human\n');
    await f.want(f.request('gcr.io/acme/api', '2.1'));
    await f.loop.once();
    expect(github.pulls).toHaveLength(1);
    expect(github.requests.filter((r) => r === 'POST /repos/acme/gitops/pulls')).toHaveLength(1);
    expect(github.requests.filter((r) => r === 'PATCH /repos/acme/gitops/pulls/1')).toHaveLength(1);
    // Reviewers are asked once, when the pull request is opened.
    expect(github.requests.filter((r) => r.endsWith('/requested_reviewers'))).toHaveLength(1);
    expect(pull.title).toBe('Update 2 images (image-automation-prod)');
    expect(pull.body).toContain('`gcr.io/acme/api`');
    expect(pull.body).toContain('`gcr.io/acme/web`');
    expect(git(f.bare, 'rev-parse', 'image-updater/main~1').trim()).toBe(git(f.bare, 'rev-parse', 'main').trim());
    expect(onBranch('apps/web.yaml')).toContain('web:2.0');
    expect(onBranch('apps/api.yaml')).toContain('api:2.1');
    expect(onBranch('README.md')).toBe('changed by a human\n');
    expect(f.target('gcr.io/acme/api')).toMatchObject({ status: 'proposed', proposalNumber: 1 });
    // Still proposed in the same pull request: no second event.
    expect(f.store.listEvents(web.id).map((e) => e.type)).toEqual(['requested', 'proposed']);
  });

  it('marks the targets synced once the pull request is merged', async () => {
    const { f, github } = await prFixture();
    await f.want(f.request('gcr.io/acme/web', '3.0'), f.request('gcr.io/acme/api', '3.1'));
    await f.loop.once();
    github.merge(1);
    await f.loop.once();
    const main = git(f.bare, 'rev-parse', 'main').trim();
    expect(main).toBe(github.pulls[0]!.merge_commit_sha);
    for (const image of ['gcr.io/acme/web', 'gcr.io/acme/api']) {
      const t = f.target(image);
      expect(t).toMatchObject({ status: 'synced', appliedCommit: main, proposalUrl: 'https://github.example/acme/gitops/pull/1' });
      expect(f.store.listEvents(t.id).map((e) => e.type)).toEqual(['requested', 'proposed', 'merged', 'synced']);
    }
    // Nothing left to propose: no new pull request.
    expect(github.pulls).toHaveLength(1);
  });

  it('marks targets synced at once when the base branch already holds their tags', async () => {
    const { f, github } = await prFixture();
    await f.want(f.request('gcr.io/acme/web', '1.0'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/web')).toMatchObject({ status: 'synced', appliedTag: '1.0' });
    expect(github.requests).toEqual([]);
  });

  it('fails the targets with PR_CLOSED when the pull request is closed without merging', async () => {
    const { f, github } = await prFixture();
    await f.want(f.request('gcr.io/acme/web', '4.0'));
    await f.loop.once();
    github.close(1);
    await f.loop.once();
    expect(f.target('gcr.io/acme/web')).toMatchObject({
      status: 'failed',
      lastErrorCode: 'PR_CLOSED',
      lastErrorMessage: 'pull request #1 (https://github.example/acme/gitops/pull/1) was closed without being merged; send the update again to propose it anew',
    });
    // Sending it again proposes it anew.
    await f.want(f.request('gcr.io/acme/web', '4.0'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/web')).toMatchObject({ status: 'proposed', proposalNumber: 2 });
  });

  it('waits as long as a secondary rate limit asks (retry-after), then opens the pull request', async () => {
    const { f, github } = await prFixture();
    github.failNext(/^POST \/repos\/acme\/gitops\/pulls$/, 403, { 'retry-after': '2' }, {
      message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.',
      documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
    });
    await f.want(f.request('gcr.io/acme/web', '5.0'));
    const before = Date.now();
    await f.loop.once();
    const waiting = f.target('gcr.io/acme/web');
    expect(waiting).toMatchObject({ status: 'pending', lastErrorCode: 'GITHUB_RATE_LIMITED', lastErrorMessage: expect.stringContaining('secondary rate limit') });
    expect(waiting.nextAttemptAt).toBeGreaterThanOrEqual(before + 2000);
    expect(github.pulls).toHaveLength(0);

    await f.loop.once();
    expect(f.target('gcr.io/acme/web')).toMatchObject({ status: 'proposed', proposalNumber: 1, lastErrorCode: null });
  });

  it('leaves out of the pull request an update that breaks validation, and proposes the rest', async () => {
    const { f, github, onBranch } = await prFixture(GITHUB_TOKEN, {
      'env/prod.jsonnet': `local pinned = 'gcr.io/acme/legacy:1.0'; // ${KEYWORD}\nassert std.endsWith(pinned, ':1.0') : 'legacy is pinned to 1.0';\n{ image: pinned }\n`,
    });
    await f.want(f.request('gcr.io/acme/web', '7.0'), f.request('gcr.io/acme/legacy', '2.0'), f.request('gcr.io/acme/api', '7.1'));
    await f.loop.once();
    expect(f.target('gcr.io/acme/legacy')).toMatchObject({ status: 'failed', lastErrorCode: 'VALIDATION_FAILED', lastErrorMessage: expect.stringContaining('legacy is pinned to 1.0') });
    expect(github.pulls).toHaveLength(1);
    expect(github.pulls[0]!.title).toBe('Update 2 images (image-automation-prod)');
    expect(onBranch('apps/web.yaml')).toContain('web:7.0');
    expect(onBranch('apps/api.yaml')).toContain('api:7.1');
    expect(onBranch('env/prod.jsonnet')).toContain("'gcr.io/acme/legacy:1.0'");
    expect(f.target('gcr.io/acme/web').status).toBe('proposed');
  });

  it('keeps the target pending with a clear error, and no token anywhere, when GitHub refuses the token', async () => {
    const { f, github } = await prFixture('ghp_wrongToken999');
    await f.want(f.request('gcr.io/acme/web', '6.0'));
    await f.loop.once();
    const t = f.target('gcr.io/acme/web');
    expect(t).toMatchObject({ status: 'pending', lastErrorCode: 'GITHUB_AUTH_FAILED', lastErrorMessage: expect.stringContaining('GitHub refused the token for listing the pull requests of acme/gitops (401: Bad credentials)') });
    expect(JSON.stringify([t, f.store.listEvents(t.id), f.logs])).not.toContain('ghp_wrongToken999');
    expect(github.pulls).toHaveLength(0);
  });
});
