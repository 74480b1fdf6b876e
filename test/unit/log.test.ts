import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactText, redactUrl } from '../../shared/log.ts';

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: createLogger('info', sink), lines };
}

describe('log redaction', () => {
  it('removes credentials from URLs and Authorization values in text', () => {
    expect(redactUrl('clone https://bot:s3cret@git.example.com/a.git failed')).toBe('clone https://***@git.example.com/a.git failed');
    expect(redactText('header Authorization: Bearer iu_abc.def-123 refused')).toBe('header Authorization: Bearer [redacted] refused');
    expect(redactText('Basic Ym90OnMzY3JldA==')).toBe('Basic [redacted]');
  });

  it('redacts secret headers, URL user info and error text in log lines', () => {
    const { log, lines } = capture();
    log.info({ headers: { authorization: 'Bearer iu_secret', 'content-type': 'application/json' } }, 'x');
    log.info({ url: 'https://bot:s3cret@git.example.com/acme/gitops.git' }, 'y');
    log.error({ err: new Error('fatal: could not read from https://bot:s3cret@git.example.com/x') }, 'z');
    const text = lines.join('');
    expect(text).not.toContain('iu_secret');
    expect(text).not.toContain('s3cret');
    expect(text).toContain('"content-type":"application/json"');
    expect(text).toContain('https://***@git.example.com/acme/gitops.git');
  });
});

describe('tracingRequested', () => {
  it('exports only when the standard variables ask for it', async () => {
    const { tracingRequested } = await import('../../shared/telemetry.ts');
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
    expect(tracingRequested({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
  });
});
