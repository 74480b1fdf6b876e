// The one error middleware: known errors send their code and message; body
// parser failures become 400/413/415; anything else is logged and hidden.
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ApiError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';

/** Translates express.json()'s failures (which carry a `type`) into ApiErrors. */
function fromBodyParser(err: { type?: unknown; status?: unknown; limit?: unknown }): ApiError | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return new ApiError('PAYLOAD_TOO_LARGE', `the request body is larger than the limit of ${String(err.limit)} bytes`);
    case 'entity.parse.failed':
      return new ApiError('INVALID_JSON', 'the request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new ApiError('UNSUPPORTED_MEDIA_TYPE', 'the request body must be UTF-8 JSON, without a content encoding');
    default:
      return typeof err.status === 'number' && err.status >= 400 && err.status < 500
        ? new ApiError('INVALID_JSON', 'the request body could not be read')
        : undefined;
  }
}

/** The error middleware: the last handler of the app. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const known = err instanceof ApiError ? err : typeof err === 'object' && err !== null ? fromBodyParser(err) : undefined;
    const error = known ?? new ApiError('INTERNAL', 'internal server error; the server log has the details');
    if (!known) log.error({ err, method: req.method, path: req.path }, 'request failed');
    res.locals.errorCode = error.code;
    if (error.code === 'UNAUTHENTICATED') res.set('WWW-Authenticate', 'Bearer realm="image-updater"');
    res.status(error.status).json(error.toBody());
  };
}

/** Answers routes that do not exist. */
export const notFound: RequestHandler = (req) => {
  throw new ApiError('NOT_FOUND', `no route ${req.method} ${req.path}`);
};

/** Answers a known path asked with a method it does not serve. */
export function methodNotAllowed(allowed: string[]): RequestHandler {
  return (req, res) => {
    res.set('Allow', allowed.join(', '));
    throw new ApiError('METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allowed.join(' or ')}`);
  };
}
