import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../shared/config-file.ts';
import { parseDuration } from '../../shared/config.ts';

const HASH = 'a'.repeat(64);
const valid = (extra = '') => `repositories:
  - name: gitops
    url: https://git.example.com/acme/gitops.git
tokens:
  - name: ci
    sha256: ${HASH}
    repositories: ["gitops"]
    images: ["gcr.io/acme/*"]
    keywords: ["image-automation-*"]
${extra}`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, '/etc/iu/config.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('parseConfig', () => {
  it('fills defaults and resolves relative paths against the file', () => {
    const config = parseConfig(valid(), '/etc/iu/config.yaml', {});
    expect(config.server).toEqual({ host: '127.0.0.1', port: 8080, maxBodyBytes: 65536, shutdownTimeout: 10_000 });
    expect(config.database).toEqual({ path: '/etc/iu/data/image-updater.db', synchronous: 'full' });
    expect(config.policy.mutableTags).toEqual(['latest']);
    expect(config.repositories[0]).toMatchObject({ branch: 'main', branches: ['main'] });
    expect(config.tokens[0]!.admin).toBe(false);
  });

  it('reports every problem at once, each with its line, key and rule', () => {
    const text = `server:
  port: 99999
repositories:
  - name: Git Ops
    url: https://git.example.com/acme/gitops.git
tokens:
  - name: ci
    sha256: not-a-hash
    repositories: ["*"]
    images: ["**"]
    keywords: ["*"]
`;
    const found = problems(text);
    expect(found).toEqual([
      '/etc/iu/config.yaml:2: server.port: must be from 0 to 65535',
      expect.stringMatching(/^\/etc\/iu\/config\.yaml:4: repositories\[0\]\.name: must be 1 to 63 lowercase/),
      expect.stringMatching(/^\/etc\/iu\/config\.yaml:8: tokens\[0\]\.sha256: must be 64 lowercase hex digits/),
    ]);
  });

  it('names missing and unknown keys', () => {
    const found = problems(`repositories:
  - name: gitops
tokens: []
databse: { path: x }
`);
    expect(found).toContain('/etc/iu/config.yaml:2: repositories[0].url: is required');
    expect(found).toContain('/etc/iu/config.yaml:4: databse: is not a known field');
    expect(found.some((p) => p.includes('tokens: must list at least one token'))).toBe(true);
  });

  it('interpolates ${VAR} in values and reports unset variables', () => {
    const text = valid().replace(HASH, '${CI_TOKEN_SHA}');
    expect(parseConfig(text, '/c.yaml', { CI_TOKEN_SHA: HASH }).tokens[0]!.sha256).toBe(HASH);
    expect(problems(text)).toEqual(['/etc/iu/config.yaml:6: tokens[0].sha256: environment variable CI_TOKEN_SHA is not set']);
    // A variable's value is data: it cannot add keys to the document.
    const injected = valid().replace('https://git.example.com/acme/gitops.git', '"${URL}"');
    const config = parseConfig(injected, '/c.yaml', { URL: 'x\nadmin: true' });
    expect(config.repositories[0]!.url).toBe('x\nadmin: true');
    expect(parseConfig(valid().replace('acme/gitops', () => 'acme/$${x}'), '/c.yaml', {}).repositories[0]!.url).toContain('acme/${x}');
  });

  it('checks across fields: duplicates, patterns that match nothing', () => {
    const found = problems(`repositories:
  - name: gitops
    url: a
  - name: gitops
    url: b
tokens:
  - name: ci
    sha256: ${HASH}
    repositories: ["gitop"]
    images: ["acme/*"]
    keywords: ["*"]
  - name: ci2
    sha256: ${HASH}
    repositories: ["*"]
    images: ["**"]
    keywords: ["*"]
`);
    expect(found).toEqual([
      '/etc/iu/config.yaml:4: repositories[1].name: this name is already used by repositories[0]',
      '/etc/iu/config.yaml:13: tokens[1].sha256: this hash is already used by tokens[0]',
      '/etc/iu/config.yaml:9: tokens[0].repositories[0]: pattern "gitop" matches no configured repository (gitops, gitops)',
      '/etc/iu/config.yaml:10: tokens[0].images[0]: pattern "acme/*" can never match: images are matched in normalised form, so write "docker.io/acme/*"',
    ]);
  });

  it('reports YAML syntax errors with their line', () => {
    expect(problems('server:\n  port: [1,\nrepositories: x\n')[0]).toBe(
      '/etc/iu/config.yaml:3: Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
  });

  it('refuses invalid branch names and durations', () => {
    const found = problems(valid('server: { shutdownTimeout: 10 seconds }').replace('url: https', 'branch: "a..b"\n    url: https'));
    expect(found).toEqual([
      expect.stringContaining('server.shutdownTimeout: must be a duration'),
      expect.stringContaining('repositories[0].branch: is not a valid branch name: must not contain ".."'),
    ]);
  });
});

describe('registries and mirror', () => {
  it('defaults to no mirror and fills the registry defaults', () => {
    const config = parseConfig(valid('registries: [{ host: "gcr.io", username: u, password: "${PW}" }]'), '/etc/iu/config.yaml', { PW: 's3cret' });
    expect(config.mirror).toMatchObject({ mode: 'off', timeout: 1_800_000, keep: 0, requestTimeout: 30_000 });
    expect(config.registries).toEqual([{ host: 'gcr.io', insecure: false, username: 'u', password: 's3cret', maxConcurrency: 8, maxRequestsPerSecond: 200 }]);
    expect(config.repositories[0]!.pinDigest).toBe(false);
  });

  it('reports every mirror and registry mistake at once', () => {
    const found = problems(
      valid(`registries:
  - { host: "https://gcr.io", username: u }
  - { host: "gcr.io" }
  - { host: "gcr.io" }
mirror: { mode: copy, keep: -1 }`).replace('url: https', 'pinDigest: true\n    url: https'),
    );
    expect(found).toEqual([
      expect.stringContaining('registries[0].host: must be a host with an optional port, without a path'),
      expect.stringContaining('mirror.keep: must be from 0 to 100000'),
      expect.stringContaining('registries[2].host: this host is already used by registries[1]'),
      expect.stringContaining('registries[0].password: must be given with the other: username and password go together'),
      expect.stringContaining('mirror.registry: is required when mirror.mode is "copy"'),
    ]);
    expect(problems(valid('mirror: { registry: "Registry.internal/Mirror", mode: verify }'))).toEqual([
      expect.stringContaining('mirror.registry: prefix path component "Mirror" must be lowercase'),
    ]);
    expect(problems(valid().replace('url: https', 'pinDigest: true\n    url: https'))).toEqual([
      expect.stringContaining('repositories[0].pinDigest: needs mirror.mode "verify" or "copy"'),
    ]);
  });
});

describe('commit message and signing', () => {
  it('refuses unknown template variables and a signing section without exactly one key', () => {
    const found = problems(
      valid().replace('url: https', 'commitMessage: { subject: "Deploy {{tag}}", body: "{{changes}} {{ oops }}" }\n    signing: {}\n    url: https'),
    );
    expect(found).toEqual([
      expect.stringContaining('repositories[0].commitMessage.subject: has an unknown variable {{tag}}; known: {{summary}}, {{count}}'),
      expect.stringContaining('repositories[0].commitMessage.body: has an unknown variable {{oops}}'),
      expect.stringContaining('repositories[0].signing: must give exactly one of sshKeyFile and sshKey'),
    ]);
    expect(problems(valid().replace('url: https', 'signing: { sshKey: "not a key" }\n    url: https'))).toEqual([
      expect.stringContaining('repositories[0].signing.sshKey: must be an OpenSSH private key'),
    ]);
  });
});

describe('parseDuration', () => {
  it('reads units and whole milliseconds', () => {
    expect(parseDuration('200ms')).toBe(200);
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration(1500)).toBe(1500);
    for (const bad of ['10', '1.5s', '-1s', 1.5, -1, null, '10 s']) expect(parseDuration(bad)).toBeUndefined();
  });
});
