import { describe, expect, it } from 'vitest';
import { branchProblem } from '../../shared/git-ref.ts';
import { globsToRegex } from '../../shared/glob.ts';

describe('globs', () => {
  it('keeps * within one path segment and lets ** cross', () => {
    const one = globsToRegex(['gcr.io/acme/*']);
    expect(one.test('gcr.io/acme/app')).toBe(true);
    expect(one.test('gcr.io/acme/team/app')).toBe(false);
    expect(one.test('gcr.io/acme-evil/app')).toBe(false);
    const deep = globsToRegex(['gcr.io/acme/**']);
    expect(deep.test('gcr.io/acme/team/app')).toBe(true);
    expect(deep.test('gcr.io/acmeX/app')).toBe(false);
  });
  it('treats regex characters literally and anchors both ends', () => {
    const re = globsToRegex(['a.b', 'x+y']);
    expect(re.test('a.b')).toBe(true);
    expect(re.test('axb')).toBe(false);
    expect(re.test('x+y')).toBe(true);
    expect(re.test('xxy')).toBe(false);
    expect(re.test('za.b')).toBe(false);
  });
  it('matches when any pattern matches', () => {
    const re = globsToRegex(['main', 'release-*']);
    expect(re.test('release-1.2')).toBe(true);
    expect(re.test('main')).toBe(true);
    expect(re.test('feature/x')).toBe(false);
  });
});

describe('branchProblem', () => {
  it.each(['main', 'release/1.2', 'feature-x', 'a.b/c_d'])('accepts %s', (b) => {
    expect(branchProblem(b)).toBeUndefined();
  });
  it.each(['', '-x', 'a..b', 'a b', 'a~1', 'a^', 'a:b', 'a?', 'a*', 'a[', 'a\\b', '/a', 'a/', 'a//b', 'a.', '.a', 'a/.b', 'x.lock', '@', 'a@{1}', 'a\nb'])(
    'refuses %j',
    (b) => {
      expect(branchProblem(b)).toBeDefined();
    },
  );
});
