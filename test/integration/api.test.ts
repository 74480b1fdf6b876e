import request from 'supertest';
import { beforeEach, describe, expect, it } from 'vitest';
import { makeApp } from '../helpers/app.ts';
import { TOKENS } from '../helpers/tokens.ts';

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
const update = { repository: 'gitops', image: 'gcr.io/acme/app', tag: '1.4.2', keyword: 'image-automation-prod' };

describe('POST /v1/images', () => {
  let t: ReturnType<typeof makeApp>;
  beforeEach(() => {
    t = makeApp();
  });

  it('records a desired tag and answers 202 with the target', async () => {
    const res = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    expect(res.body).toMatchObject({
      change: 'created',
      target: {
        repository: 'gitops',
        branch: 'main',
        image: 'gcr.io/acme/app',
        keyword: 'image-automation-prod',
        status: 'pending',
        desired: { tag: '1.4.2', digest: null, requestedBy: 'ci' },
        applied: null,
        lastError: null,
      },
    });
    const row = t.store.db.prepare('SELECT desired_tag, status, requested_by FROM targets').get();
    expect(row).toEqual({ desired_tag: '1.4.2', status: 'pending', requested_by: 'ci' });
    expect(t.logs.some((l) => l.includes('"msg":"update requested"') && l.includes('"tag":"1.4.2"'))).toBe(true);
  });

  it('normalises the image so that nginx and docker.io/library/nginx are one target', async () => {
    const admin = bearer(TOKENS.admin);
    const a = await request(t.app).post('/v1/images').set(admin).send({ ...update, image: 'nginx', tag: '1.25' }).expect(202);
    const b = await request(t.app)
      .post('/v1/images')
      .set(admin)
      .send({ ...update, image: 'docker.io/library/nginx', tag: '1.26' })
      .expect(202);
    expect(a.body.target.image).toBe('docker.io/library/nginx');
    expect(b.body).toMatchObject({ change: 'superseded', target: { id: a.body.target.id, desired: { tag: '1.26' } } });
    expect(t.count('targets')).toBe(1);
  });

  it('requires the repository when several are configured', async () => {
    const res = await request(t.app)
      .post('/v1/images')
      .set(bearer(TOKENS.ci))
      .send({ image: update.image, tag: '1.0', keyword: update.keyword })
      .expect(400);
    expect(res.body.error).toEqual({
      code: 'REPOSITORY_REQUIRED',
      field: 'repository',
      message: 'repository is required: 2 repositories are configured (gitops, infra)',
    });
  });

  it('defaults the repository when only one is configured, and the branch to the repository’s', async () => {
    const one = makeApp({ oneRepository: true });
    const res = await request(one.app)
      .post('/v1/images')
      .set(bearer(TOKENS.ci))
      .send({ image: update.image, tag: '1.0', keyword: update.keyword })
      .expect(202);
    expect(res.body.target).toMatchObject({ repository: 'gitops', branch: 'main' });
    const release = await request(one.app)
      .post('/v1/images')
      .set(bearer(TOKENS.ci))
      .send({ ...update, branch: 'release-2' })
      .expect(202);
    expect(release.body.target.branch).toBe('release-2');
  });

  it('is idempotent: the same request twice leaves one target and one requested event', async () => {
    const first = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    const second = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    expect(second.body.change).toBe('unchanged');
    expect(second.body.target).toEqual(first.body.target);
    expect(t.count('targets')).toBe(1);
    expect(t.count('events')).toBe(1);
  });

  it('supersedes: a new tag replaces the desired one and both show in the events', async () => {
    const first = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    const second = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send({ ...update, tag: '1.4.3' }).expect(202);
    expect(second.body).toMatchObject({ change: 'superseded', target: { id: first.body.target.id, desired: { tag: '1.4.3' } } });
    const events = await request(t.app).get(`/v1/images/${first.body.target.id}/events`).set(bearer(TOKENS.ci)).expect(200);
    expect(events.body.events.map((e: { type: string; tag: string; message: string | null }) => [e.type, e.tag, e.message])).toEqual([
      ['requested', '1.4.2', null],
      ['superseded', '1.4.2', 'superseded by 1.4.3'],
      ['requested', '1.4.3', null],
    ]);
  });

  it('retries a failed target when the same tag is requested again', async () => {
    const first = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    t.store.db
      .prepare("UPDATE targets SET status = 'failed', last_error_code = 'MARKER_NOT_FOUND', last_error_message = 'x', attempts = 3")
      .run();
    const again = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send(update).expect(202);
    expect(again.body).toMatchObject({ change: 'retried', target: { id: first.body.target.id, status: 'pending', attempts: 0, lastError: null } });
  });

  it('records a batch atomically as one request, naming each change', async () => {
    const updates = [
      { ...update, image: 'gcr.io/acme/api', tag: '2.0.0' },
      { ...update, image: 'gcr.io/acme/web', tag: '2.0.0' },
      { ...update, image: 'gcr.io/acme/api', tag: '2.0.0' }, // identical repeat: merged
      { ...update, image: 'localhost:5000/team/worker', tag: '2.0.0', digest: 'sha256:' + 'b'.repeat(64) },
    ];
    const res = await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send({ updates }).expect(202);
    expect(res.body.batchId).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.updates.map((u: { change: string; target: { image: string } }) => [u.change, u.target.image])).toEqual([
      ['created', 'gcr.io/acme/api'],
      ['created', 'gcr.io/acme/web'],
      ['unchanged', 'gcr.io/acme/api'],
      ['created', 'localhost:5000/team/worker'],
    ]);
    expect(t.count('targets')).toBe(3);
    const batchIds = t.store.db.prepare('SELECT DISTINCT batch_id FROM targets').pluck().all();
    expect(batchIds).toEqual([res.body.batchId]);
  });

  it('accepts a batch of 500', async () => {
    const updates = Array.from({ length: 500 }, (_, i) => ({ image: `gcr.io/acme/s${i}`, tag: 'v1', keyword: 'image-automation-prod', repository: 'gitops' }));
    await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).send({ updates }).expect(202);
    expect(t.count('targets')).toBe(500);
  });

  it('stores the W3C traceparent of the request so the sync can link to it', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await request(t.app).post('/v1/images').set(bearer(TOKENS.ci)).set('traceparent', traceparent).send(update).expect(202);
    expect(t.store.db.prepare('SELECT request_trace FROM targets').pluck().get()).toBe(traceparent);
    expect(t.store.db.prepare('SELECT trace_id FROM events').pluck().get()).toBe('0af7651916cd43dd8448eb211c80319c');
  });
});

describe('GET /v1/images', () => {
  it('filters, pages and limits reads to the token’s scope', async () => {
    const t = makeApp();
    const admin = bearer(TOKENS.admin);
    for (let i = 0; i < 5; i++) {
      await request(t.app).post('/v1/images').set(admin).send({ ...update, image: `gcr.io/acme/app${i}` }).expect(202);
    }
    await request(t.app).post('/v1/images').set(admin).send({ ...update, repository: 'infra', image: 'nginx', tag: '1.25' }).expect(202);

    const page1 = await request(t.app).get('/v1/images?repository=gitops&limit=2').set(bearer(TOKENS.ci)).expect(200);
    expect(page1.body.targets.map((x: { image: string }) => x.image)).toEqual(['gcr.io/acme/app0', 'gcr.io/acme/app1']);
    const page2 = await request(t.app).get(`/v1/images?repository=gitops&limit=2&after=${page1.body.next}`).set(bearer(TOKENS.ci)).expect(200);
    expect(page2.body.targets.map((x: { image: string }) => x.image)).toEqual(['gcr.io/acme/app2', 'gcr.io/acme/app3']);
    const last = await request(t.app).get(`/v1/images?repository=gitops&limit=2&after=${page2.body.next}`).set(bearer(TOKENS.ci)).expect(200);
    expect(last.body).toMatchObject({ targets: [{ image: 'gcr.io/acme/app4' }], next: null });

    // The ci token cannot see infra's nginx; the other token sees only it; the image filter normalises.
    const ciAll = await request(t.app).get('/v1/images').set(bearer(TOKENS.ci)).expect(200);
    expect(ciAll.body.targets).toHaveLength(5);
    const other = await request(t.app).get('/v1/images?image=nginx&status=pending').set(bearer(TOKENS.other)).expect(200);
    expect(other.body.targets.map((x: { image: string }) => x.image)).toEqual(['docker.io/library/nginx']);
    const nginxId = other.body.targets[0].id;
    await request(t.app).get(`/v1/images/${nginxId}`).set(bearer(TOKENS.ci)).expect(404);
    await request(t.app).get(`/v1/images/${nginxId}/events`).set(bearer(TOKENS.ci)).expect(404);
    const one = await request(t.app).get(`/v1/images/${nginxId}`).set(bearer(TOKENS.other)).expect(200);
    expect(one.body).toMatchObject({ id: nginxId, repository: 'infra', desired: { tag: '1.25' } });
  });

  it('refuses bad filters by name', async () => {
    const t = makeApp();
    const res = await request(t.app).get('/v1/images?status=done').set(bearer(TOKENS.ci)).expect(400);
    expect(res.body.error).toMatchObject({ code: 'INVALID_FIELD', field: 'status' });
    const limit = await request(t.app).get('/v1/images?limit=5000').set(bearer(TOKENS.ci)).expect(400);
    expect(limit.body.error).toEqual({ code: 'INVALID_FIELD', field: 'limit', message: 'limit must be at most 1000' });
    const extra = await request(t.app).get('/v1/images?stauts=pending').set(bearer(TOKENS.ci)).expect(400);
    expect(extra.body.error).toMatchObject({ code: 'UNKNOWN_FIELD', field: 'stauts' });
  });
});

describe('health', () => {
  it('answers /healthz and /readyz without a token', async () => {
    const t = makeApp();
    await request(t.app).get('/healthz').expect(200, { status: 'ok' });
    await request(t.app).get('/readyz').expect(200, { status: 'ready', database: 'ok' });
    await t.store.close();
    await request(t.app).get('/readyz').expect(503);
  });
});

describe('POST /v1/sync', () => {
  it('makes pending targets due now, for admin tokens only', async () => {
    const t = makeApp();
    const admin = bearer(TOKENS.admin);
    await request(t.app).post('/v1/images').set(admin).send(update).expect(202);
    await request(t.app).post('/v1/images').set(admin).send({ ...update, repository: 'infra', image: 'nginx', tag: '1.25' }).expect(202);
    // Both are waiting out a backoff, as after a failed sync.
    t.store.db.prepare('UPDATE targets SET next_attempt_at = ?').run(Date.now() + 600_000);

    const refused = await request(t.app).post('/v1/sync').set(bearer(TOKENS.ci)).expect(403);
    expect(refused.body.error).toEqual({ code: 'FORBIDDEN', message: 'token "ci" is not an admin token: only admin tokens may start a sync' });
    await request(t.app).post('/v1/sync?repository=nope').set(admin).expect(404);

    const one = await request(t.app).post('/v1/sync?repository=infra').set(admin).expect(202);
    expect(one.body).toEqual({ due: 1 });
    const all = await request(t.app).post('/v1/sync').set(admin).expect(202);
    expect(all.body).toEqual({ due: 1 });
    const due = t.store.db.prepare('SELECT count(*) FROM targets WHERE next_attempt_at <= ?').pluck().get(Date.now());
    expect(due).toBe(2);
    await request(t.app).get('/v1/sync').set(admin).expect(405);
  });
});
