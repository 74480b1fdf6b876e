// Observability of the real service (the CLI as a child process) with credentials
// everywhere: traces exported over OTLP/HTTP to a receiver started here, /metrics
// checked by promtool and scraped by a real Prometheus, the dashboard's queries and
// the alert rules checked by Prometheus itself, and no secret in any of it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/app.ts';
import { startService, type Service } from '../helpers/cli.ts';
import { createRepository, GIT_PASSWORD, GIT_USER, startGitServer, type GitServer } from '../helpers/git-server.ts';
import { buildImage, pushImage } from '../helpers/oci-image.ts';
import { freePort, REGISTRY_PASSWORD, REGISTRY_USER, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { KEYWORD } from '../helpers/syncer.ts';
import { TOKENS, tokensYaml } from '../helpers/tokens.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OTLP_SECRET = 'otlp-collector-s3cret-4d1';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
  links?: Array<{ traceId: string; spanId: string }>;
}

/** An OTLP/HTTP receiver (http/json): keeps every body and the headers it came with. */
async function startReceiver() {
  const bodies: Array<{ path: string; headers: http.IncomingHttpHeaders; body: string }> = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      bodies.push({ path: req.url ?? '', headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    spans(): Array<OtlpSpan & { service: unknown }> {
      return bodies
        .filter((b) => b.path === '/v1/traces')
        .flatMap((b) => {
          const parsed = JSON.parse(b.body) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
          return parsed.resourceSpans.flatMap((rs) => {
            const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue;
            return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, service })));
          });
        });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  return value && (value.stringValue ?? value.intValue ?? value.arrayValue);
};

function run(command: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(command, args, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function startPrometheus(target: string) {
  const dir = tempDir('iu-prometheus-');
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: ["${path.join(ROOT, 'deploy/prometheus/alerts.yaml')}"]
scrape_configs:
  - job_name: image-updater
    static_configs: [{ targets: ["${target}"] }]
`,
  );
  const child: ChildProcess = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  const query = async (expr: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
  };
  return {
    query,
    /** Polls a query until it returns something (Prometheus needs a few scrapes). */
    async until(expr: string, seconds = 45) {
      for (let i = 0; i < seconds * 4; i++) {
        const answer = await query(expr).catch(() => undefined);
        if (answer?.data?.result.length) return answer.data.result;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(`Prometheus never answered ${expr}`);
    },
    stop: () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM')))),
  };
}

let git: GitServer;
let source: TestRegistry;
let mirror: TestRegistry;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let service: Service;
let prometheus: Awaited<ReturnType<typeof startPrometheus>>;
let image: string;
let exited: { code: number | null };
let scrape = '';

beforeAll(async () => {
  [git, source, mirror, receiver] = await Promise.all([startGitServer(), startRegistry('basic'), startRegistry('token'), startReceiver()]);
  image = `${source.host}/acme/observed`;
  await pushImage(buildImage('1.0.0', 'observed', { single: true, platforms: ['linux/amd64'] }), source, 'acme/observed', '1.0.0');
  createRepository(git, 'observed', { 'deploy.yaml': `image: ${image}:0.9.0 # ${KEYWORD}\n` });
  const dir = tempDir('iu-observed-');
  const config = path.join(dir, 'config.yaml');
  writeFileSync(
    config,
    `server: { port: 0 }
database: { path: ${path.join(dir, 'db.sqlite')} }
log: { level: debug }
syncer: { workDir: ${path.join(dir, 'work')}, quietWindow: 0 }
registries:
  - { host: "${source.host}", insecure: true, username: ${REGISTRY_USER}, password: "\${REGISTRY_PASSWORD}" }
  - { host: "${mirror.host}", insecure: true, username: ${REGISTRY_USER}, password: "\${REGISTRY_PASSWORD}" }
mirror: { registry: "${mirror.host}/mirror", mode: copy }
repositories:
  - name: gitops
    url: ${git.url('observed')}
    auth: { username: ${GIT_USER}, password: "\${GIT_PASSWORD}" }
${tokensYaml({ gitopsOnly: true })}`,
  );
  service = await startService(config, 'serve', {
    GIT_PASSWORD,
    REGISTRY_PASSWORD,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${OTLP_SECRET}`,
    OTEL_BSP_SCHEDULE_DELAY: '200',
  });
  prometheus = await startPrometheus(`127.0.0.1:${service.port}`);

  const res = await fetch(`${service.url}/v1/images`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKENS.admin}`, 'Content-Type': 'application/json', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
    body: JSON.stringify({ repository: 'gitops', image, tag: '1.0.0', keyword: KEYWORD }),
  });
  expect(res.status).toBe(202);
  const id = ((await res.json()) as { target: { id: number } }).target.id;
  for (let i = 0; i < 200; i++) {
    const target = (await (await fetch(`${service.url}/v1/images/${id}`, { headers: { Authorization: `Bearer ${TOKENS.admin}` } })).json()) as { status: string };
    if (target.status === 'synced') break;
    await new Promise((r) => setTimeout(r, 50));
  }
}, 60_000);

afterAll(async () => {
  if (service.child.exitCode === null) service.child.kill('SIGKILL');
  await prometheus?.stop();
  await Promise.all([git.close(), source.close(), mirror.close(), receiver.close()]);
});

describe('metrics', () => {
  it('serves /metrics that promtool accepts, with every family the dashboard and alerts use', async () => {
    scrape = await (await fetch(`${service.url}/metrics`)).text();
    const lint = await run('promtool', ['check', 'metrics'], scrape);
    expect(lint, lint.stderr + lint.stdout).toMatchObject({ code: 0 });
    for (const family of [
      'image_updater_http_requests_total',
      'image_updater_http_request_duration_seconds',
      'image_updater_targets',
      'image_updater_oldest_waiting_target_age_seconds',
      'image_updater_updates_total',
      'image_updater_commits_total',
      'image_updater_push_retries_total',
      'image_updater_syncs_total',
      'image_updater_sync_step_duration_seconds',
      'image_updater_registry_requests_total',
      'image_updater_lead_time_seconds',
      'image_updater_last_successful_sync_timestamp_seconds',
    ]) {
      expect(scrape).toContain(`# TYPE ${family} `);
    }
    expect(scrape).toContain('image_updater_updates_total{result="synced",code="none"} 1');
    expect(scrape).toContain('image_updater_commits_total{mode="batch"} 1');
    expect(scrape).toContain('image_updater_targets{status="synced"} 1');
    expect(scrape).toContain('image_updater_lead_time_seconds_count 1');
    expect(scrape).toMatch(/image_updater_http_requests_total\{route="\/v1\/images",method="POST",status="202"\} 1/);
    expect(scrape).toMatch(new RegExp(`image_updater_registry_requests_total\\{registry="${mirror.host.replace(/\./g, '\\.')}",operation="manifest_put",status="201"\\} 1`));
    expect(scrape).toMatch(/image_updater_sync_step_duration_seconds_count\{step="git.push"\} 1/);
    // Nothing unbounded: no tag, digest or SHA among the label values.
    expect(scrape).not.toMatch(/1\.0\.0|sha256:|[0-9a-f]{40}/);
  });

  it('is scraped by a real Prometheus, which answers image_updater_updates_total and every dashboard query', async () => {
    const result = await prometheus.until('image_updater_updates_total{result="synced"}');
    expect(result[0]!.metric).toMatchObject({ job: 'image-updater', result: 'synced', code: 'none' });
    expect(result[0]!.value[1]).toBe('1');

    const dashboard = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(path.join(ROOT, 'deploy/grafana/image-updater.json'), 'utf8'))) as {
      panels: Array<{ title: string; datasource: { type: string }; targets: Array<{ expr?: string }> }>;
    };
    const exprs = dashboard.panels.filter((p) => p.datasource.type === 'prometheus').flatMap((p) => p.targets.map((t) => [p.title, t.expr!] as const));
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    for (const [title, expr] of exprs) {
      const answer = await prometheus.query(expr.replaceAll('$__rate_interval', '1m'));
      expect(answer, `${title}: ${expr}`).toMatchObject({ status: 'success' });
    }
  });

  it('ships alert rules that promtool accepts and Prometheus loads', async () => {
    const check = await run('promtool', ['check', 'rules', path.join(ROOT, 'deploy/prometheus/alerts.yaml')]);
    expect(check, check.stdout + check.stderr).toMatchObject({ code: 0 });
    expect(check.stdout).toContain('SUCCESS: 5 rules found');
  });
});

describe('traces over OTLP', () => {
  it('exports the request and the sync it caused, linked, and flushes them on shutdown', async () => {
    service.child.kill('SIGTERM');
    exited = await service.exited;
    expect(exited.code).toBe(0);

    const spans = receiver.spans();
    expect(spans.every((s) => s.service === 'image-updater')).toBe(true);
    expect(receiver.bodies.every((b) => b.headers.authorization === `Bearer ${OTLP_SECRET}`)).toBe(true);
    const post = spans.find((s) => s.name === 'POST /v1/images')!;
    expect(post).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' });
    const sync = spans.find((s) => s.name === 'sync')!;
    expect(sync.links).toEqual([expect.objectContaining({ traceId: post.traceId, spanId: post.spanId })]);
    expect(attr(sync, 'image_updater.repository')).toBe('gitops');
    const inSync = spans.filter((s) => s.traceId === sync.traceId).map((s) => s.name);
    for (const name of ['targets.load', 'mirror', 'mirror.image', 'registry.copy', 'sync.attempt', 'git.prepare', 'search', 'plan', 'validate', 'git.commit', 'git.push', 'record']) {
      expect(inSync).toContain(name);
    }

    // The log line of the push carries the sync's trace id.
    const pushed = service.logs.find((l) => l.msg === 'pushed')!;
    expect(pushed.trace_id).toBe(sync.traceId);
  });

  it('leaks no secret into logs, spans or metrics', async () => {
    expect(scrape).not.toBe('');
    const everything = [JSON.stringify(service.logs), scrape, ...receiver.bodies.map((b) => b.body)].join('\n');
    for (const secret of [GIT_PASSWORD, REGISTRY_PASSWORD, TOKENS.admin, OTLP_SECRET, Buffer.from(`${GIT_USER}:${GIT_PASSWORD}`).toString('base64')]) {
      expect(everything).not.toContain(secret);
    }
    expect(everything).not.toMatch(/Basic [A-Za-z0-9+/=]{12}|Bearer [A-Za-z0-9._-]{12}/);
  });
});
