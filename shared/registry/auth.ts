// Registry authentication: anonymous, Basic, and the Bearer challenge flow of
// the distribution spec (a 401 names a token realm, service and scope; a token
// from the realm is cached per scope until it expires).

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * The challenges of a `WWW-Authenticate` header, e.g.
 * `Bearer realm="https://auth.example.com/token",service="registry",scope="repository:a/b:pull"`.
 * Scheme names are lowercased; quoted values may hold commas and escaped quotes.
 */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  const re = /\s*(?:([A-Za-z][\w!#$%&'*+.^`|~-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))|([A-Za-z][\w!#$%&'*+.^`|~-]*))\s*,?/gy;
  let current: Challenge | undefined;
  for (let m = re.exec(header); m && m[0] !== ''; m = re.exec(header)) {
    if (m[4] !== undefined) {
      // A bare word starts a new challenge; it may be followed by its first parameter without a comma.
      current = { scheme: m[4].toLowerCase(), params: {} };
      challenges.push(current);
    } else if (current && m[1] !== undefined) {
      current.params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
    }
  }
  return challenges;
}

export interface Credentials {
  username: string;
  password: string;
}

export function basicHeader(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/**
 * Scopes merged per resource (`repository:a/b:pull` and `repository:a/b:push,pull` give
 * `repository:a/b:pull,push`): what a token request asks for, once each.
 */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const cut = scope.lastIndexOf(':');
    if (cut <= 0) continue;
    const resource = scope.slice(0, cut);
    let actions = byResource.get(resource);
    if (!actions) byResource.set(resource, (actions = new Set()));
    for (const action of scope.slice(cut + 1).split(',')) if (action) actions.add(action);
  }
  return [...byResource].map(([resource, actions]) => `${resource}:${[...actions].sort().join(',')}`);
}

/** The scope strings a token must cover, deduplicated and in a stable order (the cache key). */
export function scopeKey(scopes: readonly string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/**
 * Bearer tokens of one registry, by scope. Tokens are reused until shortly
 * before they expire; concurrent requests for one scope share one token request.
 */
export function createTokenCache(now: () => number = Date.now) {
  const tokens = new Map<string, CachedToken>();
  const inFlight = new Map<string, Promise<string>>();
  return {
    get(key: string): string | undefined {
      const cached = tokens.get(key);
      if (cached && cached.expiresAt > now()) return cached.token;
      if (cached) tokens.delete(key);
      return undefined;
    },
    /** The token for `key` from `fetchToken` (`expiresIn` in seconds; 60 when the service does not say). */
    async fetch(key: string, fetchToken: () => Promise<{ token: string; expiresIn: number | undefined }>): Promise<string> {
      let pending = inFlight.get(key);
      if (!pending) {
        pending = fetchToken()
          .then(({ token, expiresIn }) => {
            const lifetime = (expiresIn ?? 60) * 1000;
            // Renew a little early so that a token never expires on its way to the registry.
            tokens.set(key, { token, expiresAt: now() + Math.max(lifetime - Math.min(30_000, lifetime / 4), 1000) });
            return token;
          })
          .finally(() => inFlight.delete(key));
        inFlight.set(key, pending);
      }
      return pending;
    },
    forget(key: string): void {
      tokens.delete(key);
    },
  };
}
