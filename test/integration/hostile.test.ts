// Malformed and hostile requests: each gets the expected status, code and
// field, and nothing reaches the database.
import { createHash } from 'node:crypto';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { makeApp } from '../helpers/app.ts';
import { TOKENS } from '../helpers/tokens.ts';

const good = { repository: 'gitops', image: 'gcr.io/acme/app', tag: '1.4.2', keyword: 'image-automation-prod' };
const json = 'application/json';

interface Case {
  name: string;
  method?: 'post' | 'get' | 'put' | 'delete';
  path?: string;
  headers?: Record<string, string>;
  /** A raw string is sent as is; anything else as JSON. */
  body?: unknown;
  status: number;
  code: string;
  field?: string;
  message?: RegExp;
}

const auth = { Authorization: `Bearer ${TOKENS.ci}`, 'Content-Type': json };
const withBody = (body: unknown, extra: Partial<Case> & Pick<Case, 'name' | 'status' | 'code'>): Case => ({ body, headers: auth, ...extra });
const many = (n: number) => Array.from({ length: n }, (_, i) => ({ ...good, image: `gcr.io/acme/app${i}` }));

const CASES: Case[] = [
  // Authentication and scope.
  { name: 'no Authorization header', headers: { 'Content-Type': json }, body: good, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'unknown token', headers: { ...auth, Authorization: 'Bearer iu_nope' }, body: good, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'Basic instead of Bearer', headers: { ...auth, Authorization: `Basic ${Buffer.from(`x:${TOKENS.ci}`).toString('base64')}` }, body: good, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'token with a space smuggled in', headers: { ...auth, Authorization: `Bearer ${TOKENS.ci} admin` }, body: good, status: 401, code: 'UNAUTHENTICATED' },
  { name: 'oversized token', headers: { ...auth, Authorization: `Bearer ${'a'.repeat(600)}` }, body: good, status: 401, code: 'UNAUTHENTICATED' },
  withBody({ ...good, repository: 'infra' }, { name: 'repository outside the token scope', status: 403, code: 'FORBIDDEN', field: 'repository' }),
  withBody({ ...good, image: 'nginx' }, { name: 'image outside the token scope', status: 403, code: 'FORBIDDEN', field: 'image', message: /may not update image "docker\.io\/library\/nginx"/ }),
  withBody({ ...good, image: 'gcr.io/acme-evil/app' }, { name: 'image with a look-alike prefix', status: 403, code: 'FORBIDDEN', field: 'image' }),
  withBody({ ...good, keyword: 'prod' }, { name: 'keyword outside the token scope', status: 403, code: 'FORBIDDEN', field: 'keyword' }),
  // Transport.
  { name: 'text/plain body', headers: { ...auth, 'Content-Type': 'text/plain' }, body: JSON.stringify(good), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'form-encoded body', headers: { ...auth, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'image=x&tag=y', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'unsupported content encoding', headers: { ...auth, 'Content-Encoding': 'x-unknown' }, body: JSON.stringify(good), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  withBody('{"image": "gcr.io/acme/app", "tag": ', { name: 'truncated JSON', status: 400, code: 'INVALID_JSON' }),
  withBody('"just a string"', { name: 'a JSON string', status: 400, code: 'INVALID_JSON' }),
  withBody('null', { name: 'JSON null', status: 400, code: 'INVALID_JSON' }),
  withBody([good], { name: 'a JSON array', status: 400, code: 'INVALID_JSON', message: /must be a JSON object/ }),
  withBody({ ...good, padding: 'x'.repeat(70 * 1024) }, { name: 'a body over 64 KiB', status: 413, code: 'PAYLOAD_TOO_LARGE' }),
  // Fields.
  withBody({ ...good, tag: undefined }, { name: 'missing tag', status: 400, code: 'MISSING_FIELD', field: 'tag', message: /^tag is required$/ }),
  withBody({ ...good, image: undefined }, { name: 'missing image', status: 400, code: 'MISSING_FIELD', field: 'image' }),
  withBody({ ...good, keyword: undefined }, { name: 'missing keyword', status: 400, code: 'MISSING_FIELD', field: 'keyword' }),
  withBody({ ...good, tag: '1.0;rm -rf /' }, { name: 'shell injection in the tag', status: 400, code: 'INVALID_FIELD', field: 'tag', message: /^tag "1\.0;rm -rf \/" must match/ }),
  withBody({ ...good, tag: '$(touch /tmp/pwned)' }, { name: 'command substitution in the tag', status: 400, code: 'INVALID_FIELD', field: 'tag' }),
  withBody({ ...good, tag: '1.0\nimage: evil' }, { name: 'newline in the tag', status: 400, code: 'INVALID_FIELD', field: 'tag' }),
  withBody({ ...good, tag: 'a'.repeat(129) }, { name: 'tag of 129 characters', status: 400, code: 'INVALID_FIELD', field: 'tag', message: /at most 128/ }),
  withBody({ ...good, tag: 1.2 }, { name: 'tag as a number', status: 400, code: 'INVALID_FIELD', field: 'tag', message: /^tag must be a string, not a number$/ }),
  withBody({ ...good, tag: 'latest' }, { name: 'the mutable tag latest', status: 400, code: 'MUTABLE_TAG', field: 'tag' }),
  withBody({ ...good, tag: 'LATEST' }, { name: 'latest in capitals', status: 400, code: 'MUTABLE_TAG', field: 'tag' }),
  withBody({ ...good, image: 'gcr.io/acme/app:1.4.2' }, { name: 'image carrying a tag', status: 400, code: 'INVALID_FIELD', field: 'image', message: /send it in "tag"/ }),
  withBody({ ...good, image: 'gcr.io/Acme/App' }, { name: 'image in capitals', status: 400, code: 'INVALID_FIELD', field: 'image' }),
  withBody({ ...good, image: '../../etc/passwd' }, { name: 'path traversal as image', status: 400, code: 'INVALID_FIELD', field: 'image' }),
  withBody({ ...good, keyword: 'image-automation-prod # x' }, { name: 'keyword with a comment', status: 400, code: 'INVALID_FIELD', field: 'keyword' }),
  withBody({ ...good, digest: 'sha256:xyz' }, { name: 'malformed digest', status: 400, code: 'INVALID_FIELD', field: 'digest' }),
  withBody({ ...good, branch: '--upload-pack=touch /tmp/pwned' }, { name: 'git option as branch', status: 400, code: 'INVALID_FIELD', field: 'branch' }),
  withBody({ ...good, branch: 'main; rm -rf /' }, { name: 'shell injection in the branch', status: 400, code: 'INVALID_FIELD', field: 'branch' }),
  withBody({ ...good, branch: 'dev' }, { name: 'branch the repository does not allow', status: 400, code: 'BRANCH_NOT_ALLOWED', field: 'branch', message: /allowed: main, release-\*/ }),
  withBody({ ...good, repository: 'nope' }, { name: 'unknown repository', status: 404, code: 'REPOSITORY_NOT_FOUND', field: 'repository' }),
  withBody({ ...good, tga: '1.0' }, { name: 'misspelt field', status: 400, code: 'UNKNOWN_FIELD', field: 'tga' }),
  withBody(`{"__proto__": {"admin": true}, "image": "gcr.io/acme/app", "tag": "1", "keyword": "image-automation-prod", "repository": "gitops"}`, { name: '__proto__ pollution attempt', status: 400, code: 'UNKNOWN_FIELD', field: '__proto__' }),
  // Batches.
  withBody({ updates: [] }, { name: 'empty batch', status: 400, code: 'INVALID_FIELD', field: 'updates' }),
  withBody({ updates: many(501) }, { name: 'batch of 501', status: 400, code: 'INVALID_FIELD', field: 'updates', message: /at most 500/ }),
  withBody({ updates: good }, { name: 'updates not an array', status: 400, code: 'INVALID_FIELD', field: 'updates' }),
  withBody({ updates: [good, good, good, { ...good, tag: '1.0 ' }] }, { name: 'batch with a bad fourth entry', status: 400, code: 'INVALID_FIELD', field: 'updates[3].tag' }),
  withBody({ updates: [...many(2), { ...good, image: 'nginx' }] }, { name: 'batch with one entry out of scope', status: 403, code: 'FORBIDDEN', field: 'updates[2].image' }),
  withBody({ updates: [good, { ...good, tag: '9.9' }] }, { name: 'batch asking two tags for one target', status: 400, code: 'CONFLICTING_UPDATES', field: 'updates[1]' }),
  withBody({ updates: [good], dryRun: true }, { name: 'batch with an unknown key', status: 400, code: 'UNKNOWN_FIELD', field: 'dryRun' }),
  // Routes.
  { name: 'PUT on the collection', method: 'put', headers: auth, body: good, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { name: 'DELETE a target', method: 'delete', path: '/v1/images/1', headers: auth, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { name: 'non-numeric id', method: 'get', path: '/v1/images/1%20OR%201=1', headers: auth, status: 404, code: 'NOT_FOUND' },
  { name: 'unknown route', method: 'get', path: '/v1/admin', headers: auth, status: 404, code: 'NOT_FOUND' },
];

describe('hostile and malformed requests', () => {
  it(`covers at least 25 cases (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(25);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const t = makeApp();
    let req = request(t.app)[c.method ?? 'post'](c.path ?? '/v1/images');
    for (const [k, v] of Object.entries(c.headers ?? {})) req = req.set(k, v);
    const res = await (c.body === undefined ? req : req.send(typeof c.body === 'string' ? c.body : JSON.stringify(c.body)));
    expect(res.status).toBe(c.status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error.code).toBe(c.code);
    expect(typeof res.body.error.message).toBe('string');
    if (c.field !== undefined) expect(res.body.error.field).toBe(c.field);
    if (c.message) expect(res.body.error.message).toMatch(c.message);
    if (c.status === 401) expect(res.headers['www-authenticate']).toBe('Bearer realm="image-updater"');
    expect(t.count('targets')).toBe(0);
    expect(t.count('events')).toBe(0);
    // No token, nor its hash, is ever logged.
    const secrets = Object.values(TOKENS).flatMap((tok) => [tok, createHash('sha256').update(tok).digest('hex')]);
    for (const line of t.logs) for (const s of secrets) expect(line).not.toContain(s);
    expect(t.logs.some((l) => l.includes('"msg":"request refused"') && l.includes(`"code":"${c.code}"`))).toBe(true);
  });

  it('hides internal errors behind a 500 that names no internals', async () => {
    const t = makeApp();
    t.store.db.exec('DROP TABLE events');
    const res = await request(t.app).post('/v1/images').set(auth).send(good).expect(500);
    expect(res.body).toEqual({ error: { code: 'INTERNAL', message: 'internal server error; the server log has the details' } });
    expect(JSON.stringify(res.body)).not.toMatch(/events|sqlite|stack/i);
    expect(t.logs.some((l) => l.includes('"level":"error"') && l.includes('no such table: events'))).toBe(true);
  });
});
