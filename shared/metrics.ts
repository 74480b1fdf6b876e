// Prometheus metrics (prom-client), one registry per process, named by the
// Prometheus conventions: `image_updater_` prefix, `_total` counters, `_seconds`
// units. Labels stay low-cardinality: never a tag, digest or commit SHA.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

/** Where the gauges read from the database get their values (set by the process that holds the store). */
interface TargetSource {
  countsByStatus(): Array<{ status: string; count: number }>;
  oldestWaitingRequestedAt(): number | null;
}
let targetSource: TargetSource | undefined;

export const STATUSES = ['pending', 'awaiting_mirror', 'proposed', 'synced', 'failed'] as const;

export const metrics = {
  httpRequests: new Counter({
    name: 'image_updater_http_requests_total',
    help: 'HTTP requests answered, by route, method and status code.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  }),
  httpDuration: new Histogram({
    name: 'image_updater_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route.',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  }),
  targets: new Gauge({
    name: 'image_updater_targets',
    help: 'Targets (repository, branch, image, keyword) by status.',
    labelNames: ['status'] as const,
    registers: [registry],
    collect() {
      if (!targetSource) return;
      const counts = new Map(targetSource.countsByStatus().map((r) => [r.status, r.count]));
      for (const status of STATUSES) this.labels(status).set(counts.get(status) ?? 0);
    },
  }),
  oldestWaiting: new Gauge({
    name: 'image_updater_oldest_waiting_target_age_seconds',
    help: 'How long the oldest target still pending or awaiting the mirror has waited since its request (0 when none).',
    registers: [registry],
    collect() {
      if (!targetSource) return;
      const at = targetSource.oldestWaitingRequestedAt();
      this.set(at === null ? 0 : Math.max(0, (Date.now() - at) / 1000));
    },
  }),
  updates: new Counter({
    name: 'image_updater_updates_total',
    help: 'Outcomes of target syncs: synced, failed, retry or awaiting_mirror, with the error code (none when there is no error).',
    labelNames: ['result', 'code'] as const,
    registers: [registry],
  }),
  commits: new Counter({
    name: 'image_updater_commits_total',
    help: 'Commits pushed, by mode (batch or single).',
    labelNames: ['mode'] as const,
    registers: [registry],
  }),
  pushRetries: new Counter({
    name: 'image_updater_push_retries_total',
    help: 'Pushes rejected by the remote and tried again after a refetch, by repository.',
    labelNames: ['repository'] as const,
    registers: [registry],
  }),
  syncs: new Counter({
    name: 'image_updater_syncs_total',
    help: 'Syncs of a repository and branch, by result: ok (no transient failure) or failed.',
    labelNames: ['repository', 'result'] as const,
    registers: [registry],
  }),
  stepDuration: new Histogram({
    name: 'image_updater_sync_step_duration_seconds',
    help: 'Duration of each step of a sync (mirror, git.prepare, search, read, plan, write, validate, git.commit, git.push, record).',
    labelNames: ['step'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  }),
  registryRequests: new Counter({
    name: 'image_updater_registry_requests_total',
    help: 'Requests to container registries, by registry, operation and status code (error when no answer came).',
    labelNames: ['registry', 'operation', 'status'] as const,
    registers: [registry],
  }),
  leadTime: new Histogram({
    name: 'image_updater_lead_time_seconds',
    help: 'Time from the accepted request of a target to the push of the commit that carries it.',
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry],
  }),
  lastSuccess: new Gauge({
    name: 'image_updater_last_successful_sync_timestamp_seconds',
    help: 'Unix time of the last sync of a repository and branch that ended without a transient failure.',
    labelNames: ['repository', 'branch'] as const,
    registers: [registry],
  }),
};

export function setTargetSource(source: TargetSource | undefined): void {
  targetSource = source;
}
