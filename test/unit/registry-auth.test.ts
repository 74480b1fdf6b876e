import { describe, expect, it } from 'vitest';
import { createTokenCache, mergeScopes, parseChallenges, scopeKey } from '../../shared/registry/auth.ts';
import { createBudget } from '../../shared/registry/budget.ts';

describe('WWW-Authenticate challenges', () => {
  it('reads a Bearer challenge as Docker Hub sends it', () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push",error="insufficient_scope"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull,push', error: 'insufficient_scope' } },
    ]);
  });

  it('reads Basic, unquoted values, escaped quotes and several challenges in one header', () => {
    expect(parseChallenges('Basic realm="a \\"quoted\\" realm", Bearer realm=https://t.example/token, service=x')).toEqual([
      { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
      { scheme: 'bearer', params: { realm: 'https://t.example/token', service: 'x' } },
    ]);
  });

  it('gives nothing for an empty or garbled header', () => {
    expect(parseChallenges('')).toEqual([]);
    expect(parseChallenges('=,,')).toEqual([]);
  });
});

describe('scopes', () => {
  it('merges the actions asked for one repository, in a stable order', () => {
    expect(mergeScopes(['repository:a/b:pull,push', 'repository:a/b:push,pull', 'repository:c:pull', 'repository:a/b:delete'])).toEqual([
      'repository:a/b:delete,pull,push',
      'repository:c:pull',
    ]);
    expect(scopeKey(['b', 'a', 'b'])).toBe('a b');
  });
});

describe('the token cache', () => {
  it('shares one token request between concurrent callers and reuses the token until shortly before it expires', async () => {
    let now = 0;
    const cache = createTokenCache(() => now);
    let fetched = 0;
    const fetchToken = async () => ({ token: `t${++fetched}`, expiresIn: 300 });
    expect(await Promise.all([cache.fetch('k', fetchToken), cache.fetch('k', fetchToken)])).toEqual(['t1', 't1']);
    now = 269_000;
    expect(cache.get('k')).toBe('t1');
    now = 271_000;
    expect(cache.get('k')).toBeUndefined();
    expect(await cache.fetch('k', fetchToken)).toBe('t2');
  });
});

describe('the request budget', () => {
  it('never lets more than the limit run at once', async () => {
    const budget = createBudget(2, 1000);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const release = await budget.acquire();
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        order.push(i);
        running--;
        release();
        release(); // twice is harmless
      }),
    );
    expect(peak).toBe(2);
    expect(order).toHaveLength(8);
  });

  it('starts no more than the rate allows per second after the burst', async () => {
    let now = 0;
    const budget = createBudget(100, 10, () => now);
    for (let i = 0; i < 10; i++) (await budget.acquire())();
    let started = false;
    const eleventh = budget.acquire().then((release) => ((started = true), release()));
    await new Promise((r) => setTimeout(r, 20));
    expect(started).toBe(false);
    now = 100; // a tenth of a second: one more token
    await eleventh;
    expect(started).toBe(true);
  });
});
