// The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json. Patterns, enums and limits
// come from the same constants the validation uses; test/integration/openapi.test.ts checks that it
// lists exactly the routes the app serves, every status code each one answers, and that every
// response body matches its schema.
import { TARGET_STATUSES } from '../shared/desired-state.ts';
import { HTTP_STATUS } from '../shared/errors.ts';
import { DIGEST, KEYWORD, TAG } from '../shared/image-ref.ts';
import { MAX_BATCH } from './schemas.ts';

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const nullable = (schema: Json) => ({ oneOf: [schema, { type: 'null' }] });
const dateTime = { type: 'string', format: 'date-time' };
const json = (schema: Json, description: string) => ({ description, content: { 'application/json': { schema } } });
const error = (description: string) => ({ $ref: `#/components/responses/${description}` });

/** Every error answer, by status: the body is always an Error. */
const ERROR_RESPONSES = {
  BadRequest: 'The body or a query parameter breaks a rule; `field` names it (`updates[3].tag`).',
  Unauthenticated: 'No token, or not a valid one (`UNAUTHENTICATED`, with `WWW-Authenticate: Bearer`).',
  Forbidden: "The token's scope does not cover this repository, image or keyword (`FORBIDDEN`).",
  NotFound: 'No such target, or one outside the token\'s read scope (`NOT_FOUND`), or an unknown repository (`REPOSITORY_NOT_FOUND`).',
  PayloadTooLarge: 'The body is larger than `server.maxBodyBytes` (`PAYLOAD_TOO_LARGE`).',
  UnsupportedMediaType: 'The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).',
  Internal: 'An unexpected failure; the server log has the details, the answer none (`INTERNAL`).',
};

const TARGET_ID = { name: 'id', in: 'path', required: true, description: 'The target id.', schema: { type: 'integer', minimum: 1 } };
const BEARER = [{ bearer: [] }];

const update = {
  type: 'object',
  additionalProperties: false,
  required: ['image', 'tag', 'keyword'],
  properties: {
    image: { type: 'string', description: 'An image name without tag or digest, per the OCI grammar; stored normalised (`nginx` is `docker.io/library/nginx`).', examples: ['gcr.io/acme/app'] },
    tag: { type: 'string', pattern: TAG.source, description: 'The tag to deploy; mutable tags (`policy.mutableTags`) are refused.', examples: ['1.4.2'] },
    keyword: { type: 'string', pattern: KEYWORD.source, description: 'The marker comment of the manifest lines to update.', examples: ['image-automation-prod'] },
    repository: { type: 'string', minLength: 1, description: 'A configured repository; optional when exactly one is configured.' },
    branch: { type: 'string', description: "The branch; defaults to the repository's branch and must match its `branches`." },
    digest: { type: 'string', pattern: DIGEST.source, description: 'The digest CI pushed; the mirror step checks the tag names it.' },
  },
};

const target = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'repository', 'branch', 'image', 'keyword', 'status', 'desired', 'applied', 'proposal', 'attempts', 'nextAttemptAt', 'lastError', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'integer', minimum: 1 },
    repository: { type: 'string' },
    branch: { type: 'string' },
    image: { type: 'string', description: 'Normalised image name.' },
    keyword: { type: 'string' },
    status: { enum: [...TARGET_STATUSES], description: '`pending` → (`awaiting_mirror`) → `synced`, or `proposed` → `synced` in pull-request mode; `failed` until a new request.' },
    desired: {
      type: 'object',
      additionalProperties: false,
      required: ['tag', 'digest', 'requestedBy', 'requestedAt'],
      properties: { tag: { type: 'string' }, digest: nullable({ type: 'string' }), requestedBy: { type: 'string', description: 'The token name.' }, requestedAt: dateTime },
    },
    applied: nullable({
      type: 'object',
      additionalProperties: false,
      required: ['tag', 'digest', 'commit', 'at'],
      properties: { tag: { type: 'string' }, digest: nullable({ type: 'string' }), commit: nullable({ type: 'string', pattern: '^[0-9a-f]{40}$' }), at: nullable(dateTime) },
    }),
    proposal: nullable({
      type: 'object',
      additionalProperties: false,
      required: ['number', 'url'],
      properties: { number: { type: 'integer' }, url: { type: 'string', format: 'uri' } },
      description: 'The pull request carrying the change (pull-request write-back).',
    }),
    attempts: { type: 'integer', minimum: 0, description: 'Failed sync attempts since the last request.' },
    nextAttemptAt: nullable(dateTime),
    lastError: nullable({ type: 'object', additionalProperties: false, required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } }),
    createdAt: dateTime,
    updatedAt: dateTime,
  },
};

const accepted = {
  type: 'object',
  additionalProperties: false,
  required: ['change', 'target'],
  properties: { change: { enum: ['created', 'superseded', 'retried', 'unchanged'] }, target: ref('Target') },
};

const event = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'at', 'type', 'tag', 'digest', 'message', 'details', 'traceId'],
  properties: {
    id: { type: 'integer' },
    at: dateTime,
    type: {
      enum: ['requested', 'superseded', 'awaiting_mirror', 'mirror_confirmed', 'mirrored', 'committed', 'pushed', 'proposed', 'merged', 'synced', 'failed'],
    },
    tag: nullable({ type: 'string' }),
    digest: nullable({ type: 'string' }),
    message: nullable({ type: 'string' }),
    details: nullable({ type: 'object' }),
    traceId: nullable({ type: 'string', pattern: '^[0-9a-f]{32}$' }),
  },
};

const errorBody = {
  type: 'object',
  additionalProperties: false,
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'message'],
      properties: {
        code: { enum: Object.keys(HTTP_STATUS) },
        message: { type: 'string', description: 'What went wrong and what to do, for a CI log.' },
        field: { type: 'string', description: 'The offending field, as a path: `tag`, `updates[3].digest`.' },
      },
    },
  },
};

/** The document. Paths are listed in the order the app registers them. */
export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'image-updater',
    version: '1',
    summary: 'CI records the tag an image should run; the syncer commits it to the GitOps repository.',
    description:
      'Every path under `/v1` needs `Authorization: Bearer <token>`. Errors are always `{"error": {"code", "message", "field"?}}`. ' +
      'A path asked with a method it does not serve answers 405 with an `Allow` header; an unknown path answers 404.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  servers: [{ url: '/' }],
  tags: [{ name: 'images', description: 'Desired tags and their targets' }, { name: 'operations', description: 'Health, readiness, metrics, this document' }],
  paths: {
    '/healthz': {
      get: {
        tags: ['operations'],
        operationId: 'healthz',
        summary: 'Liveness: the process answers',
        security: [],
        responses: { '200': json(ref('Health'), 'The process is up.') },
      },
    },
    '/readyz': {
      get: {
        tags: ['operations'],
        operationId: 'readyz',
        summary: 'Readiness: the database is open and every migration applied',
        security: [],
        responses: { '200': json(ref('Readiness'), 'Ready.'), '503': json(ref('Readiness'), 'Not ready: the database is closed or not migrated.') },
      },
    },
    '/metrics': {
      get: {
        tags: ['operations'],
        operationId: 'metrics',
        summary: 'Prometheus metrics (text exposition format)',
        security: [],
        responses: { '200': { description: 'The metrics.', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    '/openapi.json': {
      get: {
        tags: ['operations'],
        operationId: 'openapi',
        summary: 'This document',
        security: [],
        responses: { '200': json({ type: 'object' }, 'The OpenAPI 3.1 document.') },
      },
    },
    '/v1/images': {
      post: {
        tags: ['images'],
        operationId: 'recordImages',
        summary: 'Record a desired tag, or a release of up to 500 at once',
        description:
          'Answered once the request is durable. A batch is validated as a whole and recorded atomically: one invalid entry gets a 400 naming its index, and nothing is recorded. ' +
          'A W3C `traceparent` header links the sync to the caller\'s trace.',
        security: BEARER,
        parameters: [{ name: 'traceparent', in: 'header', required: false, schema: { type: 'string' } }],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { oneOf: [ref('Update'), ref('UpdateBatch')] } } },
        },
        responses: {
          '202': json({ oneOf: [ref('Accepted'), ref('BatchAccepted')] }, 'Recorded (or `unchanged`): the syncer takes it from here.'),
          '400': error('BadRequest'),
          '401': error('Unauthenticated'),
          '403': error('Forbidden'),
          '404': error('NotFound'),
          '413': error('PayloadTooLarge'),
          '415': error('UnsupportedMediaType'),
          '500': error('Internal'),
        },
      },
      get: {
        tags: ['images'],
        operationId: 'listImages',
        summary: "List targets within the token's scope, in id order, a page at a time",
        security: BEARER,
        parameters: [
          { name: 'status', in: 'query', schema: { enum: [...TARGET_STATUSES] } },
          { name: 'repository', in: 'query', schema: { type: 'string' } },
          { name: 'branch', in: 'query', schema: { type: 'string' } },
          { name: 'image', in: 'query', schema: { type: 'string' }, description: 'Normalised before matching.' },
          { name: 'keyword', in: 'query', schema: { type: 'string' } },
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          { name: 'after', in: 'query', schema: { type: 'string' }, description: 'The `next` cursor of the previous page.' },
        ],
        responses: {
          '200': json(ref('TargetPage'), 'One page.'),
          '400': error('BadRequest'),
          '401': error('Unauthenticated'),
          '500': error('Internal'),
        },
      },
    },
    '/v1/images/{id}': {
      get: {
        tags: ['images'],
        operationId: 'getImage',
        summary: 'One target',
        security: BEARER,
        parameters: [TARGET_ID],
        responses: { '200': json(ref('Target'), 'The target.'), '401': error('Unauthenticated'), '404': error('NotFound'), '500': error('Internal') },
      },
    },
    '/v1/images/{id}/events': {
      get: {
        tags: ['images'],
        operationId: 'getImageEvents',
        summary: "A target's history, oldest first",
        security: BEARER,
        parameters: [TARGET_ID],
        responses: { '200': json(ref('EventList'), 'Its events.'), '401': error('Unauthenticated'), '404': error('NotFound'), '500': error('Internal') },
      },
    },
    '/v1/sync': {
      post: {
        tags: ['images'],
        operationId: 'syncNow',
        summary: 'Make every pending target due now (admin tokens)',
        security: BEARER,
        parameters: [{ name: 'repository', in: 'query', schema: { type: 'string' }, description: 'Only this repository.' }],
        responses: {
          '202': json(ref('SyncAccepted'), 'The number of targets whose wait was cut short.'),
          '401': error('Unauthenticated'),
          '403': error('Forbidden'),
          '404': error('NotFound'),
          '500': error('Internal'),
        },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A token from `image-updater token`; the configuration holds its SHA-256.' } },
    responses: Object.fromEntries(Object.entries(ERROR_RESPONSES).map(([name, description]) => [name, json(ref('Error'), description)])),
    schemas: {
      Update: update,
      UpdateBatch: { type: 'object', additionalProperties: false, required: ['updates'], properties: { updates: { type: 'array', minItems: 1, maxItems: MAX_BATCH, items: ref('Update') } } },
      Accepted: accepted,
      BatchAccepted: {
        type: 'object',
        additionalProperties: false,
        required: ['batchId', 'updates'],
        properties: { batchId: { type: 'string', format: 'uuid' }, updates: { type: 'array', items: ref('Accepted'), description: 'In request order.' } },
      },
      Target: target,
      TargetPage: { type: 'object', additionalProperties: false, required: ['targets', 'next'], properties: { targets: { type: 'array', items: ref('Target') }, next: nullable({ type: 'string' }) } },
      Event: event,
      EventList: { type: 'object', additionalProperties: false, required: ['events'], properties: { events: { type: 'array', items: ref('Event') } } },
      SyncAccepted: { type: 'object', additionalProperties: false, required: ['due'], properties: { due: { type: 'integer', minimum: 0 } } },
      Health: { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
      Readiness: { type: 'object', required: ['status', 'database'], properties: { status: { enum: ['ready', 'not ready'] }, database: { enum: ['ok', 'unavailable'] } } },
      Error: errorBody,
    },
  },
} as const;

/** The document as served: rendered once. */
export const openApiJson = JSON.stringify(openApiDocument);
