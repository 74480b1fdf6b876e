// GET /openapi.json against the real app: it lists exactly the routes the app registers, every status
// code each operation was seen to answer (and no other), every body the app sent matches the schema the
// document gives for that status, and every method a path does not serve answers 405 naming the others.
import { METHODS as HTTP_METHODS } from 'node:http';
import { validate as validateOpenApi } from '@hyperjump/json-schema/openapi-3-1';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeApp } from '../helpers/app.ts';
import { TOKENS } from '../helpers/tokens.ts';

type Operation = { responses: Record<string, { $ref?: string; content?: Record<string, { schema: unknown }> }> };
type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { responses: Record<string, { content: Record<string, { schema: unknown }> }> } };

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

const { app, store } = makeApp();
let doc: Document;
const ajv = new Ajv2020({ strict: false, allErrors: true });
formats.default(ajv);

/** The document's path template a concrete path falls under (`/v1/images/7` → `/v1/images/{id}`). */
function templateOf(path: string): string | undefined {
  return Object.keys(doc.paths).find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
}

/** operation key (`post /v1/images`) → the statuses the app answered with. */
const observed = new Map<string, Set<string>>();
const bodyProblems: string[] = [];

/** Sends a request through supertest, then records its status and checks its body against the document. */
async function call(method: (typeof METHODS)[number], path: string, options: { token?: string; body?: unknown; type?: string; raw?: string } = {}) {
  let req = request(app)[method](path);
  if (options.token) req = req.set(bearer(options.token));
  if (options.type) req = req.set('Content-Type', options.type);
  const res = await (options.raw !== undefined ? req.send(options.raw) : options.body !== undefined ? req.send(options.body as object) : req);
  const template = templateOf(path.split('?')[0]!);
  const key = `${method} ${template}`;
  if (!observed.has(key)) observed.set(key, new Set());
  observed.get(key)!.add(String(res.status));

  const operation = template ? doc.paths[template]?.[method] : undefined;
  const documented = operation?.responses[String(res.status)];
  if (documented) {
    const pointer = documented.$ref
      ? `${documented.$ref.slice(1)}/content`
      : `/paths/${template!.replaceAll('~', '~0').replaceAll('/', '~1')}/${method}/responses/${res.status}/content`;
    const content = documented.$ref ? doc.components.responses[documented.$ref.split('/').pop()!]!.content : documented.content!;
    const mediaType = String(res.headers['content-type']).split(';')[0]!;
    expect(Object.keys(content), key).toContain(mediaType);
    const validate = ajv.getSchema(`openapi#${pointer}/${mediaType.replace('/', '~1')}/schema`)!;
    const body = mediaType === 'application/json' ? res.body : res.text;
    if (!validate(body)) bodyProblems.push(`${key} ${res.status}: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(body).slice(0, 300)}`);
  }
  return res;
}

const update = (tag: string, extra: Record<string, unknown> = {}) => ({ repository: 'gitops', image: 'gcr.io/acme/app', tag, keyword: 'image-automation-prod', ...extra });

beforeAll(async () => {
  const res = await request(app).get('/openapi.json');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  doc = res.body as Document;
  ajv.addSchema(doc, 'openapi');
});

afterAll(async () => {
  if (store.db.open) await store.close();
});

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document whose paths and methods are exactly the routes the app registers', async () => {
    // The OpenAPI Initiative's schema of 3.1 documents, with every Schema Object checked against the
    // OAS dialect (a full JSON Schema 2020-12 implementation: ajv does not follow its $dynamicRef).
    const checked = await validateOpenApi('https://spec.openapis.org/oas/3.1/schema-base', doc as never, 'BASIC');
    const errors = checked.valid ? [] : (checked.errors ?? ['invalid']);
    expect(errors, JSON.stringify(errors.slice(0, 5))).toEqual([]);
    // Express 5's router: a layer per registered route; `app.all` routes (every HTTP method) are the 405 answers.
    const stack = (app as unknown as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router.stack;
    const served = stack
      .filter((l) => l.route && Object.keys(l.route.methods).length < HTTP_METHODS.length)
      .flatMap((l) => Object.keys(l.route!.methods).map((m) => `${m} ${l.route!.path.replace(/:(\w+)/g, '{$1}')}`));
    const described = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => (METHODS as readonly string[]).includes(m)).map((m) => `${m} ${p}`));
    expect(described.sort()).toEqual(served.sort());
  });

  it('lists every status each operation answers, and every body matches its schema', async () => {
    // Operations: what a client sees.
    await call('get', '/healthz');
    await call('get', '/readyz');
    await call('get', '/metrics');
    await call('get', '/openapi.json');

    const created = await call('post', '/v1/images', { token: TOKENS.ci, body: update('1.0.0') });
    const id = created.body.target.id as number;
    await call('post', '/v1/images', { token: TOKENS.ci, body: { updates: [update('1.0.1'), update('2.0.0', { image: 'gcr.io/acme/api' })] } });
    await call('post', '/v1/images', { token: TOKENS.ci, body: update('1.0.1') });
    await call('post', '/v1/images', { token: TOKENS.ci, body: update('1.0;rm -rf /') });
    await call('post', '/v1/images', { token: TOKENS.ci, raw: '{"image": ', type: 'application/json' });
    await call('post', '/v1/images', { body: update('1.0.2') });
    await call('post', '/v1/images', { token: 'not-a-token', body: update('1.0.2') });
    await call('post', '/v1/images', { token: TOKENS.other, body: update('1.0.2') });
    await call('post', '/v1/images', { token: TOKENS.ci, body: update('1.0.2', { repository: 'nope' }) });
    await call('post', '/v1/images', { token: TOKENS.ci, raw: JSON.stringify({ ...update('1.0.2'), pad: 'x'.repeat(70_000) }), type: 'application/json' });
    await call('post', '/v1/images', { token: TOKENS.ci, raw: 'image=gcr.io/acme/app', type: 'text/plain' });

    await call('get', '/v1/images', { token: TOKENS.ci });
    await call('get', '/v1/images?status=synced&limit=1', { token: TOKENS.admin });
    await call('get', '/v1/images?limit=0', { token: TOKENS.ci });
    await call('get', '/v1/images?colour=blue', { token: TOKENS.ci });
    await call('get', '/v1/images');

    await call('get', `/v1/images/${id}`, { token: TOKENS.ci });
    await call('get', `/v1/images/${id}`, { token: TOKENS.other });
    await call('get', '/v1/images/999999', { token: TOKENS.ci });
    await call('get', '/v1/images/abc', { token: TOKENS.ci });
    await call('get', `/v1/images/${id}`);

    const events = await call('get', `/v1/images/${id}/events`, { token: TOKENS.ci });
    expect(events.body.events.map((e: { type: string }) => e.type)).toEqual(['requested', 'superseded', 'requested']);
    await call('get', '/v1/images/999999/events', { token: TOKENS.admin });
    await call('get', `/v1/images/${id}/events`);

    await call('post', '/v1/sync', { token: TOKENS.admin });
    await call('post', '/v1/sync?repository=gitops', { token: TOKENS.admin });
    await call('post', '/v1/sync', { token: TOKENS.ci });
    await call('post', '/v1/sync?repository=nope', { token: TOKENS.admin });
    await call('post', '/v1/sync');

    // The database gone (a failed volume): readiness says so, and every /v1 operation answers a
    // 500 that tells nothing of the internals.
    await store.close();
    await call('get', '/readyz');
    await call('get', '/healthz');
    const failed = [
      await call('post', '/v1/images', { token: TOKENS.ci, body: update('9.9.9') }),
      await call('get', '/v1/images', { token: TOKENS.ci }),
      await call('get', `/v1/images/${id}`, { token: TOKENS.ci }),
      await call('get', `/v1/images/${id}/events`, { token: TOKENS.ci }),
      await call('post', '/v1/sync', { token: TOKENS.admin }),
    ];
    for (const res of failed) expect(res.body.error.message).not.toMatch(/database|sqlite|connection/i);

    const documented = new Map(
      Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).map(([m, op]) => [`${m} ${p}`, new Set(Object.keys(op.responses))] as const)),
    );
    expect(Object.fromEntries([...observed].map(([k, v]) => [k, [...v].sort()]))).toEqual(
      Object.fromEntries([...documented].map(([k, v]) => [k, [...v].sort()])),
    );
    expect(bodyProblems).toEqual([]);
  });

  it('answers 405 with an Allow header of exactly the documented methods, and 404 outside its paths', async () => {
    const { app: fresh, store: freshStore } = makeApp();
    try {
      for (const [path, ops] of Object.entries(doc.paths)) {
        const allowed = METHODS.filter((m) => m in ops);
        const concrete = path.replace('{id}', '1');
        for (const method of METHODS.filter((m) => !(m in ops))) {
          const res = await request(fresh)[method](concrete).set(bearer(TOKENS.admin));
          expect(res.status, `${method} ${path}`).toBe(405);
          expect(res.body.error.code).toBe('METHOD_NOT_ALLOWED');
          expect(res.headers.allow?.split(', ').sort(), `${method} ${path}`).toEqual(allowed.map((m) => m.toUpperCase()).sort());
        }
      }
      for (const path of ['/v2/images', '/v1/image', '/v1/images/1/events/2', '/openapi.yaml']) {
        const res = await request(fresh).get(path).set(bearer(TOKENS.admin));
        expect(res.status, path).toBe(404);
        expect(res.body.error.code).toBe('NOT_FOUND');
      }
    } finally {
      await freshStore.close();
    }
  });
});
