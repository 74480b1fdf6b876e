// A real registry for tests: Debian's `docker-registry` (CNCF distribution) on
// loopback, anonymous, with htpasswd Basic auth, or with Bearer token auth
// backed by a small local token service that signs RS256 JWTs.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID, sign, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tempDir } from './app.ts';

export const REGISTRY_USER = 'pusher';
export const REGISTRY_PASSWORD = 'registry-s3cret-password';

export type RegistryAuth = 'none' | 'basic' | 'token';

export interface TestRegistry {
  /** `127.0.0.1:<port>`, as an image reference names it. */
  host: string;
  auth: RegistryAuth;
  /**
   * Every request the registry has served so far, as `METHOD /v2/... STATUS` (from its
   * access log, read up to a marker request so nothing still in the pipe is missed).
   */
  requests(): Promise<string[]>;
  /** Requests to the token service, as `scope` strings (token auth only). */
  tokenRequests: string[];
  /** Token auth only: the next `pullOnlyTokens` tokens asked for push grant pull and nothing else. */
  tokenControl: { pullOnlyTokens: number };
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A free loopback port (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** A token service: Basic credentials in, a JWT granting the asked scope out (pull/push/delete for the user). */
async function startTokenService(dir: string, service: string, issuer: string) {
  const key = path.join(dir, 'token.key');
  const cert = path.join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=image-updater-test-token-issuer'], { stdio: 'ignore' });
  const privateKey = readFileSync(key);
  const x5c = [new X509Certificate(readFileSync(cert)).raw.toString('base64')];
  const expected = `Basic ${Buffer.from(`${REGISTRY_USER}:${REGISTRY_PASSWORD}`).toString('base64')}`;
  const requests: string[] = [];
  const control = { pullOnlyTokens: 0 };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    requests.push(scopes.join(' '));
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
      return;
    }
    const stingy = control.pullOnlyTokens > 0 && scopes.some((s) => s.includes('push'));
    if (stingy) control.pullOnlyTokens--;
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':');
      if (!type || !name || !actions) return [];
      // A stingy token service (for the re-challenge on `insufficient_scope`): pull only.
      return [{ type, name, actions: stingy ? ['pull'] : actions.split(',') }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c };
    const claims = { iss: issuer, sub: REGISTRY_USER, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), privateKey))}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { cert, requests, control, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, close: () => new Promise((r) => server.close(r)) };
}

/** Starts a registry on a free loopback port; `close` stops it and its token service. */
export async function startRegistry(auth: RegistryAuth = 'none'): Promise<TestRegistry> {
  const dir = tempDir('iu-registry-');
  const port = await freePort();
  const service = 'test-registry';
  let authYaml = '';
  let tokenService: Awaited<ReturnType<typeof startTokenService>> | undefined;
  if (auth === 'basic') {
    const file = path.join(dir, 'htpasswd');
    execFileSync('htpasswd', ['-B', '-b', '-c', file, REGISTRY_USER, REGISTRY_PASSWORD], { stdio: 'ignore' });
    authYaml = `auth: { htpasswd: { realm: test-registry, path: ${file} } }`;
  } else if (auth === 'token') {
    tokenService = await startTokenService(dir, service, 'test-issuer');
    authYaml = `auth: { token: { realm: "${tokenService.url}", service: ${service}, issuer: test-issuer, rootcertbundle: ${tokenService.cert} } }`;
  }
  const configFile = path.join(dir, 'config.yml');
  writeFileSync(
    configFile,
    `version: 0.1
log: { level: warn, accesslog: { disabled: false } }
storage: { filesystem: { rootdirectory: ${path.join(dir, 'data')} }, delete: { enabled: true } }
http: { addr: "127.0.0.1:${port}" }
${authYaml}
`,
  );

  const accessLog: string[] = [];
  let child: ChildProcess | undefined;
  async function start(): Promise<void> {
    const proc = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let buffered = '';
    const collect = (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const m = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3})/.exec(line);
        if (m) accessLog.push(`${m[1]} ${m[2]} ${m[3]}`);
      }
    };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    for (let i = 0; i < 200; i++) {
      if (proc.exitCode !== null) throw new Error(`docker-registry exited with ${proc.exitCode}`);
      const up = await fetch(`http://127.0.0.1:${port}/v2/`).then(() => true, () => false);
      if (up) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('docker-registry did not start');
  }
  async function stop(): Promise<void> {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  await start();
  return {
    host: `127.0.0.1:${port}`,
    auth,
    async requests() {
      const marker = `/v2/?log-marker=${randomUUID()}`;
      await fetch(`http://127.0.0.1:${port}${marker}`).then((r) => r.arrayBuffer());
      for (let i = 0; i < 400 && !accessLog.some((line) => line.includes(marker)); i++) await new Promise((r) => setTimeout(r, 5));
      const index = accessLog.findIndex((line) => line.includes(marker));
      if (index < 0) throw new Error('the registry access log did not show the marker request');
      const seen = accessLog.slice(0, index).filter((line) => !line.includes('log-marker='));
      return seen;
    },
    tokenRequests: tokenService?.requests ?? [],
    tokenControl: tokenService?.control ?? { pullOnlyTokens: 0 },
    stop,
    start,
    async close() {
      await stop();
      await tokenService?.close();
    },
  };
}

/** skopeo's credential flags for a test registry (none when anonymous). */
export function skopeoCreds(registry: TestRegistry, flag: '--creds' | '--src-creds' | '--dest-creds'): string[] {
  return registry.auth === 'none' ? [] : [flag, `${REGISTRY_USER}:${REGISTRY_PASSWORD}`];
}

/** The sha256 digest of some bytes, as registries write it. */
export function digestOf(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export interface ProxyHooks {
  /** Answers a request itself (return true), e.g. with a 503 or a redirect; otherwise it is forwarded. */
  intercept?(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** Changes the headers of a forwarded response. */
  responseHeaders?(req: http.IncomingMessage, headers: http.OutgoingHttpHeaders, status: number): void;
}

/**
 * A pass-through HTTP proxy in front of a test registry, for what the registry itself
 * never does (ask for chunks, redirect, fail for a while). The Host header is kept, so the
 * registry's upload locations point back at the proxy.
 */
export async function startProxy(target: TestRegistry, hooks: ProxyHooks = {}) {
  const [targetHost, targetPort] = target.host.split(':') as [string, string];
  const seen: Array<{ method: string; url: string; authorization: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    if (hooks.intercept?.(req, res)) {
      req.resume();
      return;
    }
    const upstream = http.request({ host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      const headers = { ...answer.headers };
      hooks.responseHeaders?.(req, headers, answer.statusCode ?? 502);
      res.writeHead(answer.statusCode ?? 502, headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
