// Structured JSON logs (pino): fixed message text, facts in fields, secrets redacted.
//
// Redaction is done by serializers on the keys that can carry a secret rather than
// by pino's path-based `redact`: wildcard paths cost ~10% of a request's CPU here,
// serializers cost nothing unless their key is logged.
import { pino, type DestinationStream, type Logger } from 'pino';
import { logTraceFields } from './telemetry.ts';

export type { Logger };

const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-registry-auth']);
const CREDENTIALS_IN_URL = /([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

/** Strips `user:password@` from every URL in a string, so it can be logged or shown. */
export function redactUrl(text: string): string {
  return text.replace(CREDENTIALS_IN_URL, '$1***@');
}

/** Removes credentials from free text: URLs with user info and Authorization values. */
export function redactText(text: string): string {
  return redactUrl(text).replace(BEARER, '$1 [redacted]');
}

function redactHeaders(headers: unknown): unknown {
  if (typeof headers !== 'object' || headers === null) return headers;
  return Object.fromEntries(
    Object.entries(headers).map(([k, v]) => [k, SECRET_HEADERS.has(k.toLowerCase()) ? '[redacted]' : v]),
  );
}

function serializeError(err: unknown): unknown {
  const plain = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (typeof plain !== 'object' || plain === null) return plain;
  for (const key of ['message', 'stack', 'stderr', 'stdout']) {
    if (typeof plain[key] === 'string') plain[key] = redactText(plain[key]);
  }
  return plain;
}

/** Creates the process logger; tests pass their own destination. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'image-updater' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // Inside a span, every line carries its trace_id and span_id: from a log line to its trace and back.
      mixin: logTraceFields,
      serializers: {
        err: serializeError,
        error: serializeError,
        headers: redactHeaders,
        url: (url: unknown) => (typeof url === 'string' ? redactUrl(url) : url),
      },
    },
    destination ?? bufferedStdout(),
  );
}

/**
 * Standard output, written in chunks of up to 4 KiB rather than one write(2) per
 * line (a line cost ~20 us of a request's CPU); a timer flushes what waits, so a
 * quiet service's lines are never more than 250 ms late. Flushed on exit.
 */
function bufferedStdout(): DestinationStream {
  const stream = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => stream.flush(), 250).unref();
  process.once('exit', () => stream.flushSync());
  return stream;
}
