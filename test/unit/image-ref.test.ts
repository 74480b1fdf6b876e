import { describe, expect, it } from 'vitest';
import { digestProblem, keywordProblem, normalizeImageName, parseImageName, tagProblem } from '../../shared/image-ref.ts';

describe('parseImageName', () => {
  it.each([
    ['nginx', 'docker.io/library/nginx'],
    ['library/nginx', 'docker.io/library/nginx'],
    ['docker.io/nginx', 'docker.io/library/nginx'],
    ['index.docker.io/library/nginx', 'docker.io/library/nginx'],
    ['acme/app', 'docker.io/acme/app'],
    ['gcr.io/acme/app', 'gcr.io/acme/app'],
    ['gcr.io/demo-gcr/demo-app-worker', 'gcr.io/demo-gcr/demo-app-worker'],
    ['localhost:5000/team/app', 'localhost:5000/team/app'],
    ['localhost/app', 'localhost/app'],
    ['registry.example.com:443/a/b/c/d', 'registry.example.com:443/a/b/c/d'],
    ['[::1]:5000/app', '[::1]:5000/app'],
    ['Registry.Example.com/app', 'Registry.Example.com/app'],
    ['ghcr.io/acme/app__x.y-z', 'ghcr.io/acme/app__x.y-z'],
    ['ghcr.io/acme/a---b', 'ghcr.io/acme/a---b'],
  ])('normalises %s to %s', (input, normalized) => {
    expect(normalizeImageName(input)).toBe(normalized);
  });

  it.each([
    ['', 'must not be empty'],
    ['gcr.io/acme/app:1.2', 'must not include a tag'],
    ['nginx:latest', 'must not include a tag'],
    ['gcr.io/acme/app@sha256:' + 'a'.repeat(64), 'must not include a digest'],
    ['gcr.io/Acme/app', 'path component "Acme" must be lowercase'],
    ['gcr.io//app', 'empty path component'],
    ['gcr.io/acme/', 'empty path component'],
    ['gcr.io/acme/-app', 'path component "-app"'],
    ['gcr.io/acme/app.', 'path component "app."'],
    ['gcr.io/ac me/app', 'white space'],
    ['gcr.io/acme/app\n', 'white space'],
    ['gcr.io/acme/app;rm', 'path component "app;rm"'],
    ['gcr.io/$(id)/app', 'path component "$(id)"'],
    ['localhost:99999/app', 'port "99999"'],
    ['localhost:abc/app', 'port "abc"'],
    ['-bad.io/app', 'registry host "-bad.io"'],
    ['a'.repeat(256), 'at most 255'],
  ])('refuses %j (%s)', (input, reason) => {
    const parsed = parseImageName(input);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toContain(reason);
  });

  it('keeps the domain and path as written', () => {
    expect(parseImageName('localhost:5000/team/app')).toEqual({
      ok: true,
      value: { domain: 'localhost:5000', path: 'team/app', normalized: 'localhost:5000/team/app' },
    });
    expect(parseImageName('nginx')).toEqual({
      ok: true,
      value: { domain: undefined, path: 'nginx', normalized: 'docker.io/library/nginx' },
    });
  });
});

describe('tags, digests and keywords', () => {
  it.each(['1.4.2', 'v1', '_x', 'a'.repeat(128), 'sha-0f3c9a1', 'A_B.c-d'])('accepts tag %s', (tag) => {
    expect(tagProblem(tag)).toBeUndefined();
  });
  it.each(['', '.x', '-x', 'a'.repeat(129), '1.0;rm -rf /', '1.0\n', 'a b', 'a/b', 'a:b', '$(id)', 'ä'])(
    'refuses tag %j',
    (tag) => {
      expect(tagProblem(tag)).toBeDefined();
    },
  );
  it('accepts only sha256 digests in lowercase hex', () => {
    expect(digestProblem('sha256:' + 'a'.repeat(64))).toBeUndefined();
    expect(digestProblem('sha256:' + 'A'.repeat(64))).toBeDefined();
    expect(digestProblem('sha256:' + 'a'.repeat(63))).toBeDefined();
    expect(digestProblem('sha512:' + 'a'.repeat(128))).toBeDefined();
  });
  it('accepts keywords by the marker grammar', () => {
    expect(keywordProblem('image-automation-prod')).toBeUndefined();
    expect(keywordProblem('a.b_c-d9')).toBeUndefined();
    for (const bad of ['', '-x', 'a b', 'a#b', 'a'.repeat(129), 'x\ny']) expect(keywordProblem(bad)).toBeDefined();
  });
});
