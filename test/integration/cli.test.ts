import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { configYaml, tempDir } from '../helpers/app.ts';
import { postImages, runCli, startService, type Service } from '../helpers/cli.ts';
import { TOKENS } from '../helpers/tokens.ts';

const running: Service[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.child.kill('SIGKILL');
});

function writeConfig(): { file: string; db: string } {
  const dir = tempDir();
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, configYaml(dir));
  return { file, db: path.join(dir, 'db', 'image-updater.db') };
}

async function start(file: string): Promise<Service> {
  const service = await startService(file);
  running.push(service);
  return service;
}

const post = postImages;

const update = (i: number) => ({ repository: 'gitops', image: `gcr.io/acme/app${i}`, tag: `1.0.${i}`, keyword: 'image-automation-prod' });

describe('the image-updater CLI', () => {
  it('reports all three mistakes of a bad configuration and exits non-zero', () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.yaml');
    writeFileSync(
      file,
      configYaml(dir)
        .replace('port: 0', 'port: "eighty"')
        .replace('url: https://git.example.com/acme/gitops.git', 'url: ""')
        .replace(/keywords: \["image-automation-\*"\]/, 'keywords: []'),
    );
    const { code, stderr, stdout } = runCli(['serve', '--config', file]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      [
        `image-updater: ${file}: the configuration has 3 problems:`,
        `  ${file}:1: server.port: must be a number, not a string`,
        `  ${file}:6: repositories[0].url: must not be empty`,
        `  ${file}:16: tokens[0].keywords: must list at least one pattern`,
        '',
      ].join('\n'),
    );
  });

  it('explains a missing configuration', () => {
    const { code, stderr } = runCli(['serve'], { IMAGE_UPDATER_CONFIG: '' });
    expect(code).toBe(2);
    expect(stderr).toContain('no configuration: pass --config FILE or set IMAGE_UPDATER_CONFIG');
    const missing = runCli(['check', '--config', '/nonexistent/config.yaml']);
    expect(missing.stderr).toContain('/nonexistent/config.yaml: no such file');
  });

  it('prints a fresh token with the config entry holding its SHA-256', () => {
    const { code, stdout } = runCli(['token', '--name', 'circleci']);
    expect(code).toBe(0);
    const token = /^ {2}(iu_[A-Za-z0-9_-]{43})$/m.exec(stdout)![1]!;
    const sha = /sha256: ([0-9a-f]{64})/.exec(stdout)![1];
    expect(sha).toBe(createHash('sha256').update(token).digest('hex'));
    expect(stdout).toContain('- name: circleci');
    expect(runCli(['token']).stdout).not.toContain(token);
  });

  it('migrates a database and finds nothing to do the second time', () => {
    const { file, db } = writeConfig();
    expect(runCli(['migrate', '--config', file])).toMatchObject({ code: 0, stdout: `${db}: applied 0001_initial.sql, 0002_mirror_tags.sql, 0003_proposed_status.sql\n` });
    expect(runCli(['migrate', '--config', file])).toMatchObject({ code: 0, stdout: `${db}: up to date\n` });
  });

  it('refuses, with the reason, a database written by a newer version', () => {
    const { file, db } = writeConfig();
    expect(runCli(['migrate', '--config', file]).code).toBe(0);
    const sqlite = new Database(db);
    sqlite.prepare("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (4, '0004_later.sql', 'x', 0)").run();
    sqlite.close();
    for (const args of [['migrate'], ['sync', '--once'], ['serve']]) {
      const { code, stdout, stderr } = runCli([...args, '--config', file]);
      expect(code).toBe(1);
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(stdout).toContain('"msg":"cannot open the database"');
      expect(stdout).toContain('the database is at migration 0004_later.sql, which this version of image-updater does not know');
    }
  });

  it('keeps every accepted update across kill -9 and a restart', async () => {
    const { file, db } = writeConfig();
    const first = await start(file);
    const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => post(first.url, update(i))));
    expect(responses.map((r) => r.status)).toEqual(Array(40).fill(202));
    // Killed at once after the last 202: no shutdown, no checkpoint, no flush.
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const rows = new Database(db, { readonly: true }).prepare('SELECT image, desired_tag AS tag FROM targets ORDER BY id').all();
    expect(rows).toHaveLength(40);
    const second = await start(file);
    const listed = await fetch(`${second.url}/v1/images?limit=100`, { headers: { Authorization: `Bearer ${TOKENS.ci}` } });
    const body = (await listed.json()) as { targets: Array<{ image: string; desired: { tag: string } }> };
    expect(new Set(body.targets.map((t) => `${t.image}:${t.desired.tag}`))).toEqual(
      new Set(Array.from({ length: 40 }, (_, i) => `gcr.io/acme/app${i}:1.0.${i}`)),
    );
  });

  it('on SIGTERM finishes the request in flight, then exits 0', async () => {
    const { file, db } = writeConfig();
    const service = await start(file);
    const body = JSON.stringify(update(1));
    const socket = net.connect(service.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let response = '';
    socket.on('data', (d) => (response += d));
    // Send the headers and half the body, stop the service, then send the rest.
    socket.write(
      `POST /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.ci}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    service.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.write(body.slice(10));
    const { code } = await service.exited;
    expect(response).toMatch(/^HTTP\/1\.1 202 /);
    expect(code).toBe(0);
    // Drained, not cut off: the shutdown timeout never had to close a connection.
    expect(service.logs.map((l) => l.msg)).toEqual(expect.arrayContaining(['signal received', 'stopping: draining requests', 'stopped']));
    expect(service.logs.filter((l) => l.level === 'warn')).toEqual([]);
    expect(new Database(db, { readonly: true }).prepare('SELECT count(*) FROM targets').pluck().get()).toBe(1);
    // And it no longer listens.
    await expect(fetch(`${service.url}/healthz`)).rejects.toThrow();
  });
});

describe('start-up checks', () => {
  it('refuses to start the syncer without rg, naming the package to install', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, configYaml(dir));
    // A PATH with git and node but no rg.
    const bin = path.join(dir, 'bin');
    const { mkdirSync, symlinkSync } = await import('node:fs');
    mkdirSync(bin);
    symlinkSync('/usr/bin/git', path.join(bin, 'git'));
    const { code, stdout } = runCli(['syncer', '--config', file], { PATH: bin });
    expect(code).toBe(1);
    expect(stdout).toContain('the syncer needs rg on PATH (apt-get install ripgrep)');
  });
});
