// Bearer tokens: the config holds only their SHA-256; a presented token is
// hashed and compared with every configured hash in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { TokenConfig } from '../shared/config.ts';
import { globsToRegex } from '../shared/glob.ts';
import type { ReadScope } from '../shared/store.ts';

/** A configured token, its patterns compiled. */
export interface Principal {
  name: string;
  admin: boolean;
  repositories: RegExp;
  images: RegExp;
  keywords: RegExp;
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/=-]{1,512})$/i;

/** SHA-256 of a token, hex, as the config stores it. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A fresh random token: `iu_` and 32 random bytes, base64url. The prefix helps secret scanners. */
export function generateToken(): string {
  return `iu_${randomBytes(32).toString('base64url')}`;
}

/** Builds the authenticator for the configured tokens. */
export function createAuth(tokens: readonly TokenConfig[]) {
  const entries = tokens.map((t) => ({
    hash: Buffer.from(t.sha256, 'hex'),
    principal: {
      name: t.name,
      admin: t.admin,
      repositories: globsToRegex(t.repositories),
      images: globsToRegex(t.images),
      keywords: globsToRegex(t.keywords),
    } satisfies Principal,
  }));

  return {
    /** The principal for an Authorization header; 'missing' or 'invalid' otherwise. */
    authenticate(header: string | undefined): Principal | 'missing' | 'invalid' {
      if (!header) return 'missing';
      const token = BEARER.exec(header.trim())?.[1];
      if (!token) return 'invalid';
      const presented = createHash('sha256').update(token, 'utf8').digest();
      let found: Principal | undefined;
      // Compare against every entry, without stopping early, so timing says nothing about which matched.
      for (const entry of entries) {
        if (timingSafeEqual(presented, entry.hash)) found ??= entry.principal;
      }
      return found ?? 'invalid';
    },
  };
}

export type Auth = ReturnType<typeof createAuth>;

/** Which of repository, image and keyword a principal may not write, or undefined when all are allowed. */
export function deniedField(
  principal: Principal,
  target: { repository: string; image: string; keyword: string },
): 'repository' | 'image' | 'keyword' | undefined {
  if (principal.admin) return undefined;
  if (!principal.repositories.test(target.repository)) return 'repository';
  if (!principal.images.test(target.image)) return 'image';
  if (!principal.keywords.test(target.keyword)) return 'keyword';
  return undefined;
}

/** What a principal may read: everything for admins, its own scope otherwise. */
export function readScope(principal: Principal): ReadScope {
  return principal.admin
    ? null
    : { repository: principal.repositories, image: principal.images, keyword: principal.keywords };
}
