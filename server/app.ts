// createApp: the express application, built from its parts and never listening itself.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import express, { type RequestHandler } from 'express';
import type { Config } from '../shared/config.ts';
import { ApiError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { metrics, registry } from '../shared/metrics.ts';
import { ATTR, tracer } from '../shared/telemetry.ts';
import type { Store } from '../shared/store.ts';
import type { Auth } from './auth.ts';
import { errorHandler, methodNotAllowed, notFound } from './errors.ts';
import { openApiJson } from './openapi.ts';
import { healthRoutes } from './routes/health.ts';
import { imagesRoutes } from './routes/images.ts';
import { syncRoutes } from './routes/sync.ts';

export interface AppDeps {
  config: Config;
  store: Store;
  auth: Auth;
  log: Logger;
  /** Called once updates are durable (or made due), so an in-process syncer can look at once. */
  onRecorded?: () => void;
}

/** Refuses requests without a valid token; sets res.locals.principal. */
function authenticate(auth: Auth): RequestHandler {
  return (req, res, next) => {
    const principal = auth.authenticate(req.get('authorization'));
    if (principal === 'missing') {
      throw new ApiError('UNAUTHENTICATED', 'send the token in an "Authorization: Bearer <token>" header');
    }
    if (principal === 'invalid') throw new ApiError('UNAUTHENTICATED', 'the token is not valid');
    res.locals.principal = principal;
    next();
  };
}

/** Requires a JSON body; answers 415 before reading anything else. */
const requireJson: RequestHandler = (req, _res, next) => {
  const type = req.headers['content-type'];
  // The common case without type-is, which costs ~5% of a request.
  const plain = type === 'application/json' || type?.startsWith('application/json;');
  if (!plain && !req.is(['application/json', 'application/*+json'])) {
    throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the body as JSON with "Content-Type: application/json"');
  }
  next();
};

/**
 * Per request: a server span (continuing the caller's W3C trace context), the request
 * metrics, and one log line (refusals at info with their code, the rest at debug).
 */
function observe(log: Logger): RequestHandler {
  // One labelled child per route, method and status: prom-client's labels() hashes its arguments on every call.
  const counted = new Map<string, { requests: { inc(): void }; duration: { observe(value: number): void } }>();
  function count(route: string, method: string, status: number) {
    const key = `${status} ${method} ${route}`;
    let child = counted.get(key);
    if (!child) {
      child = { requests: metrics.httpRequests.labels(route, method, String(status)), duration: metrics.httpDuration.labels(route) };
      counted.set(key, child);
    }
    return child;
  }

  return (req, res, next) => {
    const start = process.hrtime.bigint();
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer.startSpan(req.method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': req.path } }, parent);
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      // The route as registered (`/v1/images/:id`), never the raw path: bounded label values.
      const route = req.route ? `${req.baseUrl}${(req.route as { path: string }).path}` : 'unmatched';
      const status = res.statusCode;
      const code = res.locals.errorCode as string | undefined;
      const child = count(route, req.method, status);
      child.requests.inc();
      child.duration.observe(seconds);
      if (span.isRecording()) {
        span.updateName(`${req.method} ${route}`);
        span.setAttributes({ 'http.route': route, 'http.response.status_code': status, ...(code ? { [ATTR.errorCode]: code } : {}) });
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
      const refused = status >= 400;
      if (!refused && !log.isLevelEnabled('debug')) return;
      const fields = { method: req.method, path: req.path, status, ms: seconds * 1000, code, by: (res.locals.principal as { name?: string } | undefined)?.name };
      if (refused) log.info(fields, 'request refused');
      else log.debug(fields, 'request served');
    });
    if (!span.isRecording()) {
      next();
      return;
    }
    // The body arrives through the request's events: bind them too, or the handler would run outside the span.
    const active = trace.setSpan(parent, span);
    context.bind(active, req);
    context.bind(active, res);
    context.with(active, next);
  };
}

/** Builds the HTTP application around a store, an authenticator and a logger. */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(observe(deps.log));

  // Routes are registered flat on the app: every nested Router is one more pass per request.
  const health = healthRoutes(deps.store);
  app.get('/healthz', health.healthz);
  app.get('/readyz', health.readyz);
  // Like the health checks, without a token: it holds counts and repository names, no secret.
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  // The API's description (OpenAPI 3.1), for clients and API tools.
  app.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApiJson);
  });
  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) app.all(path, methodNotAllowed(['GET']));

  const images = imagesRoutes(deps);
  const auth = authenticate(deps.auth);
  const body = [requireJson, express.json({ limit: deps.config.server.maxBodyBytes, strict: true, type: () => true })];
  app.post('/v1/images', auth, ...body, images.create);
  app.get('/v1/images', auth, images.list);
  app.get('/v1/images/:id', auth, images.get);
  app.get('/v1/images/:id/events', auth, images.events);
  app.post('/v1/sync', auth, syncRoutes(deps).syncNow);
  app.all('/v1/sync', auth, methodNotAllowed(['POST']));
  app.all('/v1/images', auth, methodNotAllowed(['GET', 'POST']));
  app.all('/v1/images/:id', auth, methodNotAllowed(['GET']));
  app.all('/v1/images/:id/events', auth, methodNotAllowed(['GET']));

  app.use(notFound);
  app.use(errorHandler(deps.log));
  return app;
}
