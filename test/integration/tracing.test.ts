// Tracing of a real request and a real sync (git http-backend, rg, a real registry as
// source and mirror), captured by an in-memory span exporter: the span tree, its
// attributes, the link from the sync to the request, and logs that carry the trace id.
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../server/app.ts';
import { createAuth } from '../../server/auth.ts';
import { git, GIT_PASSWORD, pushCompetingCommit, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { buildImage, pushImage } from '../helpers/oci-image.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { KEYWORD, syncFixture } from '../helpers/syncer.ts';
import { TOKENS } from '../helpers/tokens.ts';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
let server: GitServer;
let source: TestRegistry;
let mirror: TestRegistry;

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  [server, source, mirror] = await Promise.all([startGitServer(), startRegistry('none'), startRegistry('none')]);
});
afterAll(async () => {
  await Promise.all([server.close(), source.close(), mirror.close()]);
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});
beforeEach(() => exporter.reset());

// As CircleCI's OpenTelemetry integration would send it: the CI job's trace.
const CI_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CI_SPAN = 'b7ad6b7169203331';

function fixture(image: string) {
  const f = syncFixture(server, {
    files: { 'apps/app.yaml': `spec:\n  containers:\n    - image: ${image}:0.1.0 # ${KEYWORD}\n` },
    top: `registries:
  - { host: "${source.host}", insecure: true }
  - { host: "${mirror.host}", insecure: true }
mirror: { registry: "${mirror.host}/mirror", mode: copy }`,
  });
  // The app logs through the fixture's logger, like the service's one logger.
  const app = createApp({ config: f.config, store: f.store, log: f.logger, auth: createAuth(f.config.tokens) });
  return { f, app };
}

const byName = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
const one = (spans: ReadableSpan[], name: string) => {
  const found = byName(spans, name);
  expect(found, `spans named ${name}`).toHaveLength(1);
  return found[0]!;
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('tracing', () => {
  it('follows a CI request to the sync that served it: one trace per sync, a span per step, linked to the request', async () => {
    const image = `${source.host}/acme/traced`;
    await pushImage(buildImage('1.0.0', 'traced', { single: true, platforms: ['linux/amd64'] }), source, 'acme/traced', '1.0.0');
    const { f, app } = fixture(image);

    const res = await request(app)
      .post('/v1/images')
      .set('Authorization', `Bearer ${TOKENS.admin}`)
      .set('traceparent', `00-${CI_TRACE}-${CI_SPAN}-01`)
      .send({ repository: 'gitops', image, tag: '1.0.0', keyword: KEYWORD });
    expect(res.status).toBe(202);

    // The request's span continues the CI trace, and is what the target remembers.
    const post = one(exporter.getFinishedSpans(), 'POST /v1/images');
    expect(post.spanContext().traceId).toBe(CI_TRACE);
    expect(parentOf(post)).toBe(CI_SPAN);
    expect(post.attributes).toMatchObject({ 'http.route': '/v1/images', 'http.response.status_code': 202 });
    expect(f.target(image).requestTrace).toBe(`00-${CI_TRACE}-${post.spanContext().spanId}-01`);
    exporter.reset();

    await f.loop.once();
    const spans = exporter.getFinishedSpans();
    const root = one(spans, 'sync');
    const traceId = root.spanContext().traceId;
    expect(parentOf(root)).toBeUndefined();
    expect(spans.every((s) => s.spanContext().traceId === traceId)).toBe(true);
    // The sync links back to the request that asked for its target.
    expect(root.links).toEqual([expect.objectContaining({ context: expect.objectContaining({ traceId: CI_TRACE, spanId: post.spanContext().spanId }) })]);
    const sha = git(f.bare, 'rev-parse', 'main').trim();
    expect(root.attributes).toMatchObject({
      'image_updater.repository': 'gitops',
      'image_updater.branch': 'main',
      'image_updater.images': [image],
      'image_updater.tags': ['1.0.0'],
      'image_updater.keywords': [KEYWORD],
      'image_updater.commits': [sha],
      'image_updater.synced': 1,
    });

    // Children of the root: load, mirror (with the image's check and copy), one attempt, record.
    const childrenOf = (span: ReadableSpan) => spans.filter((s) => parentOf(s) === span.spanContext().spanId).map((s) => s.name);
    expect(new Set(childrenOf(root))).toEqual(new Set(['targets.load', 'mirror', 'sync.attempt', 'record']));
    const mirrorImage = one(spans, 'mirror.image');
    expect(parentOf(mirrorImage)).toBe(one(spans, 'mirror').spanContext().spanId);
    expect(mirrorImage.attributes).toMatchObject({ 'image_updater.image': image, 'image_updater.tag': '1.0.0', 'image_updater.outcome': 'mirrored' });
    expect(parentOf(one(spans, 'registry.copy'))).toBe(mirrorImage.spanContext().spanId);

    const attempt = one(spans, 'sync.attempt');
    expect(attempt.attributes).toMatchObject({ 'image_updater.mode': 'batch', 'image_updater.attempt': 1, 'image_updater.outcome': 'committed', 'image_updater.commit_sha': sha });
    expect(childrenOf(attempt)).toEqual(['git.prepare', 'search', 'read', 'plan', 'write', 'validate', 'git.commit', 'git.push']);
    expect(one(spans, 'plan').attributes).toMatchObject({ 'image_updater.files_changed': 1 });
    expect(one(spans, 'git.push').attributes).toMatchObject({ 'image_updater.commit_sha': sha, 'image_updater.outcome': 'pushed' });

    // A log line written during the sync carries the trace and span it was written in.
    const pushed = f.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'pushed')!;
    expect(pushed).toMatchObject({ trace_id: traceId, span_id: attempt.spanContext().spanId });
    // No secret in any span.
    expect(JSON.stringify(spans.map((s) => ({ n: s.name, a: s.attributes, st: s.status, ev: s.events })))).not.toContain(GIT_PASSWORD);
  });

  it('shows each push retry as its own attempt, a failure with its code, and an image still missing at its source', async () => {
    const image = `${source.host}/acme/retried`;
    await pushImage(buildImage('2.0.0', 'retried', { single: true, platforms: ['linux/amd64'] }), source, 'acme/retried', '2.0.0');
    await pushImage(buildImage('1.0.0', 'unmarked', { single: true, platforms: ['linux/amd64'] }), source, 'acme/unmarked', '1.0.0');
    const { f } = fixture(image);
    await f.want(f.request(image, '2.0.0'), f.request(`${source.host}/acme/absent`, '1.0.0'), f.request(`${source.host}/acme/unmarked`, '1.0.0'));
    server.beforeNextPush(() => pushCompetingCommit(f.bare, 'README.md', 'a human was here\n'));
    await f.loop.once();

    const spans = exporter.getFinishedSpans();
    const attempts = byName(spans, 'sync.attempt').sort((a, b) => Number(a.attributes['image_updater.attempt']) - Number(b.attributes['image_updater.attempt']));
    expect(attempts.map((a) => [a.attributes['image_updater.attempt'], a.attributes['image_updater.outcome']])).toEqual([
      [1, 'rejected'],
      [2, 'committed'],
    ]);
    expect(byName(spans, 'git.push').map((s) => s.attributes['image_updater.outcome']).sort()).toEqual(['pushed', 'rejected']);
    // The image that is not at its source waits; the root says so.
    expect(one(spans, 'sync').attributes).toMatchObject({ 'image_updater.synced': 1, 'image_updater.awaiting_mirror': 1, 'image_updater.failed': 1, 'image_updater.error_codes': ['MARKER_NOT_FOUND'] });
    const absent = byName(spans, 'mirror.image').find((s) => s.attributes['image_updater.image'] === `${source.host}/acme/absent`)!;
    expect(absent.attributes['image_updater.outcome']).toBe('missing');
  });
});
