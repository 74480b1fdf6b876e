// `image-updater backup`: a verified copy of the live database while the real service keeps
// accepting requests, restored by pointing a new service at it.
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { configYaml, tempDir } from '../helpers/app.ts';
import { CLI, postImages, runCli, startService, type Service } from '../helpers/cli.ts';
import { TOKENS } from '../helpers/tokens.ts';

const run = promisify(execFile);
const running: Service[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.child.kill('SIGKILL');
});

const update = (i: number, tag = `1.0.${i}`) => ({ repository: 'gitops', image: `gcr.io/acme/app${i}`, tag, keyword: 'image-automation-prod' });

async function listAll(url: string) {
  const res = await fetch(`${url}/v1/images?limit=1000`, { headers: { Authorization: `Bearer ${TOKENS.admin}` } });
  return ((await res.json()) as { targets: Array<{ image: string; desired: { tag: string } }> }).targets;
}

describe('image-updater backup', () => {
  it('copies the live database while requests go on, and a service started on the copy has every target recorded before it', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, configYaml(dir));
    const service = await startService(file, 'server');
    running.push(service);
    for (let b = 0; b < 4; b++) {
      const res = await postImages(service.url, { updates: Array.from({ length: 50 }, (_, i) => update(b * 50 + i)) });
      expect(res.status).toBe(202);
    }
    const before = await listAll(service.url);
    expect(before).toHaveLength(200);

    // Requests keep arriving while the backup runs: new targets and new tags for old ones.
    const copy = path.join(dir, 'backup.db');
    const backup = run(process.execPath, [CLI, 'backup', '--config', file, '--to', copy]);
    const during = await Promise.all(Array.from({ length: 20 }, (_, i) => postImages(service.url, update(i, `2.0.${i}`)).then((r) => r.status)));
    expect(during.every((s) => s === 202)).toBe(true);
    const { stdout } = await backup;
    expect(stdout).toMatch(new RegExp(`^${copy.replaceAll('.', '\\.')}: \\d+ bytes, (\\d+) targets, \\d+ events, migration \\S+; integrity ok\\n$`));
    expect(Number(/, (\d+) targets/.exec(stdout)![1])).toBe(200);

    // Restore: a new service whose database is the copy.
    const restoredDir = tempDir();
    const restoredFile = path.join(restoredDir, 'config.yaml');
    writeFileSync(restoredFile, configYaml(restoredDir).replace(path.join(restoredDir, 'db', 'image-updater.db'), copy));
    const restored = await startService(restoredFile, 'server');
    running.push(restored);
    const after = await listAll(restored.url);
    const tags = new Map(after.map((t) => [t.image, t.desired.tag]));
    for (const t of before) expect([t.desired.tag, t.desired.tag.replace(/^1/, '2')]).toContain(tags.get(t.image));
    expect((await fetch(`${restored.url}/readyz`)).status).toBe(200);
  });

  it('never overwrites a file, needs --to, and leaves nothing behind when it fails', () => {
    const dir = tempDir();
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, configYaml(dir));
    expect(runCli(['migrate', '--config', file]).code).toBe(0);
    const existing = path.join(dir, 'config.yaml.bak');
    writeFileSync(existing, 'precious');
    const refused = runCli(['backup', '--config', file, '--to', existing]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${existing} exists; a backup never overwrites a file`);

    const missing = runCli(['backup', '--config', file]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('"backup" needs --to FILE');

    const noFolder = runCli(['backup', '--config', file, '--to', path.join(dir, 'nope', 'b.db')]);
    expect(noFolder.code).toBe(1);
    expect(existsSync(path.join(dir, 'nope'))).toBe(false);

    // A database that is not one: the backup fails and leaves no file that could pass for a copy.
    writeFileSync(path.join(dir, 'db', 'image-updater.db'), 'not a database at all, but long enough to be read as one'.repeat(100));
    const target = path.join(dir, 'damaged-backup.db');
    const damaged = runCli(['backup', '--config', file, '--to', target]);
    expect(damaged.code).toBe(1);
    expect(damaged.stderr).toMatch(/^image-updater: backup failed: .*not a database/);
    expect(existsSync(target)).toBe(false);
  });
});
