// Tracing: one tracer for the whole service, spans through the OpenTelemetry API
// (a no-op until an SDK is registered), and the SDK started only when the
// standard OTEL_* variables ask for an exporter. W3C trace context in and out.
import {
  context,
  isSpanContextValid,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Link,
  type Span,
  type SpanKind,
  type TimeInput,
} from '@opentelemetry/api';

export const tracer = trace.getTracer('image-updater', '0.1.0');

/** Attribute names of our own; HTTP spans use the semantic conventions' `http.*` and `url.*`. */
export const ATTR = {
  repository: 'image_updater.repository',
  branch: 'image_updater.branch',
  image: 'image_updater.image',
  images: 'image_updater.images',
  tag: 'image_updater.tag',
  tags: 'image_updater.tags',
  keyword: 'image_updater.keyword',
  keywords: 'image_updater.keywords',
  targets: 'image_updater.targets',
  targetId: 'image_updater.target_id',
  filesChanged: 'image_updater.files_changed',
  commit: 'image_updater.commit_sha',
  commits: 'image_updater.commits',
  mode: 'image_updater.mode',
  attempt: 'image_updater.attempt',
  outcome: 'image_updater.outcome',
  errorCode: 'image_updater.error_code',
  errorCodes: 'image_updater.error_codes',
  registry: 'image_updater.registry',
  digest: 'image_updater.digest',
  bytes: 'image_updater.bytes',
} as const;

export interface SpanOptions {
  attributes?: Attributes;
  links?: Link[];
  kind?: SpanKind;
  startTime?: TimeInput;
}

/**
 * Runs `work` inside a new active span (so logs and child spans see it). A throw marks
 * the span as an error with the error's code, and is rethrown.
 */
export async function inSpan<T>(name: string, options: SpanOptions, work: (span: Span) => Promise<T> | T): Promise<T> {
  return tracer.startActiveSpan(name, options, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      markError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span as failed, with the error's code when it has one; the message is ours and holds no secret. */
export function markError(span: Span, err: unknown, code?: string): void {
  const errorCode = code ?? (err as { code?: unknown })?.code;
  if (typeof errorCode === 'string') span.setAttribute(ATTR.errorCode, errorCode);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** The W3C traceparent of the active span, or null when nothing is being traced. */
export function activeTraceparent(): string | null {
  const span = trace.getSpan(context.active());
  if (!span) return null;
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return null;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED ? '01' : '00')}`;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A span link to the span a W3C traceparent names (the request that asked for a target). */
export function linkTo(traceparent: string | null, attributes: Attributes = {}): Link | undefined {
  const m = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (!m) return undefined;
  const spanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true };
  return isSpanContextValid(spanContext) ? { context: spanContext, attributes } : undefined;
}

/** `trace_id` and `span_id` of the active span, for log lines (empty outside a span or without tracing). */
export function logTraceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

/** True when the standard variables ask for traces to be exported (and the SDK is not disabled). */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = env.OTEL_TRACES_EXPORTER?.split(',').map((e) => e.trim()).filter(Boolean);
  if (exporters && exporters.length > 0) return !exporters.includes('none');
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

export interface Tracing {
  /** Exports what is buffered and stops; never throws (a collector that is down is logged). */
  shutdown(): Promise<void>;
}

/**
 * Starts the OpenTelemetry SDK when the environment asks for it (OTEL_TRACES_EXPORTER,
 * OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, ...). Traces only: metrics are Prometheus's,
 * logs are pino's. Loaded lazily, so a service without tracing never loads the SDK.
 */
export async function startTracing(env: NodeJS.ProcessEnv, onError: (message: string) => void): Promise<Tracing | undefined> {
  if (!tracingRequested(env)) return undefined;
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({
    ...(env.OTEL_SERVICE_NAME ? {} : { serviceName: 'image-updater' }),
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  return {
    async shutdown() {
      try {
        await sdk.shutdown();
      } catch (err) {
        onError((err as Error).message);
      }
    },
  };
}
