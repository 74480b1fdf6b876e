// Structured JSON logs (pino): fixed message text, facts in fields, secrets redacted.
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

// Belt and braces: no code path logs these, and if one ever does they are censored.
const REDACT = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'sha256',
  '*.sha256',
];

/** Strips `user:password@` from URLs so a repository URL can be logged. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}

/** Creates the process logger; tests pass their own destination. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'image-updater' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
