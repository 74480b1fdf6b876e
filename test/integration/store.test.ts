import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { decideChange } from '../../shared/desired-state.ts';
import { createGroupCommit } from '../../shared/group-commit.ts';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../shared/migrate.ts';
import { openStore, type UpdateRequest } from '../../shared/store.ts';
import { tempDir } from '../helpers/app.ts';

const update = (tag: string, image = 'gcr.io/acme/app'): UpdateRequest => ({
  repository: 'gitops',
  branch: 'main',
  image,
  keyword: 'image-automation-prod',
  tag,
  digest: null,
});
const meta = { requestedBy: 'ci', at: 1_700_000_000_000, batchId: null, traceparent: null };

describe('migrations', () => {
  it('apply once, are recorded, and a second run does nothing', () => {
    const db = new Database(path.join(tempDir(), 'a.db'));
    expect(migrate(db)).toEqual(['0001_initial.sql', '0002_mirror_tags.sql', '0003_proposed_status.sql']);
    expect(migrate(db)).toEqual([]);
    const rows = db.prepare('SELECT version, name FROM schema_migrations').all();
    expect(rows).toEqual([
      { version: 1, name: '0001_initial.sql' },
      { version: 2, name: '0002_mirror_tags.sql' },
      { version: 3, name: '0003_proposed_status.sql' },
    ]);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all()).toEqual([
      'commit_targets',
      'commits',
      'events',
      'mirror_tags',
      'schema_migrations',
      'targets',
    ]);
  });

  it('rebuild the targets table (0003) without losing a target, its events or its commits', () => {
    const db = new Database(path.join(tempDir(), 'a.db'));
    db.pragma('foreign_keys = ON');
    migrate(db, readMigrations().slice(0, 2));
    db.prepare(`INSERT INTO targets (id, repository, branch, image, keyword, desired_tag, requested_by, requested_at, next_attempt_at, created_at, updated_at, status, applied_tag)
      VALUES (7, 'gitops', 'main', 'gcr.io/acme/app', 'k', '1.0', 'ci', 1, 1, 1, 1, 'synced', '1.0')`).run();
    db.prepare("INSERT INTO events (target_id, at, type, tag) VALUES (7, 1, 'requested', '1.0'), (7, 2, 'synced', '1.0')").run();
    db.prepare("INSERT INTO commits (id, repository, branch, sha, mode, at) VALUES (1, 'gitops', 'main', 'abc', 'batch', 2)").run();
    db.prepare("INSERT INTO commit_targets (commit_id, target_id, to_tag) VALUES (1, 7, '1.0')").run();

    expect(migrate(db)).toEqual(['0003_proposed_status.sql']);
    expect(db.prepare('SELECT id, status, applied_tag AS tag, proposal_url AS url FROM targets').all()).toEqual([{ id: 7, status: 'synced', tag: '1.0', url: null }]);
    expect(db.prepare('SELECT count(*) FROM events WHERE target_id = 7').pluck().get()).toBe(2);
    expect(db.prepare('SELECT count(*) FROM commit_targets WHERE target_id = 7').pluck().get()).toBe(1);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    // The references still hold: deleting the target cascades as before.
    db.prepare("UPDATE targets SET status = 'proposed' WHERE id = 7").run();
    db.prepare('DELETE FROM targets WHERE id = 7').run();
    expect(db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(0);
  });

  it('refuse a database migrated by a newer version', () => {
    const dir = tempDir();
    cpSync(MIGRATIONS_DIR, path.join(dir, 'm'), { recursive: true });
    writeFileSync(path.join(dir, 'm', '0004_later.sql'), 'CREATE TABLE later (x INTEGER);');
    const db = new Database(path.join(dir, 'a.db'));
    migrate(db, readMigrations(path.join(dir, 'm')));
    expect(() => migrate(db)).toThrow(/at migration 0004_later\.sql, which this version of image-updater does not know/);
  });

  it('refuse a migration edited after it was applied', () => {
    const dir = tempDir();
    cpSync(MIGRATIONS_DIR, path.join(dir, 'm'), { recursive: true });
    const db = new Database(path.join(dir, 'a.db'));
    migrate(db, readMigrations(path.join(dir, 'm')));
    writeFileSync(path.join(dir, 'm', '0001_initial.sql'), '-- edited');
    expect(() => migrate(db, readMigrations(path.join(dir, 'm')))).toThrow(/0001_initial\.sql was changed after it was applied/);
  });

  it('refuse gaps and stray file names', () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'gap'));
    writeFileSync(path.join(dir, 'gap', '0002_x.sql'), '');
    expect(() => readMigrations(path.join(dir, 'gap'))).toThrow(/expected migration 0001, found 0002_x\.sql/);
    mkdirSync(path.join(dir, 'bad'));
    writeFileSync(path.join(dir, 'bad', '1_x.sql'), '');
    expect(() => readMigrations(path.join(dir, 'bad'))).toThrow(/NNNN_lowercase_name\.sql/);
  });
});

describe('decideChange', () => {
  const existing = { desiredTag: '1.0', desiredDigest: null, status: 'synced' as const };
  it('tells created, superseded, retried and unchanged apart', () => {
    expect(decideChange(undefined, { tag: '1.0', digest: null })).toBe('created');
    expect(decideChange(existing, { tag: '1.1', digest: null })).toBe('superseded');
    expect(decideChange(existing, { tag: '1.0', digest: 'sha256:' + 'a'.repeat(64) })).toBe('superseded');
    expect(decideChange(existing, { tag: '1.0', digest: null })).toBe('unchanged');
    expect(decideChange({ ...existing, status: 'pending' }, { tag: '1.0', digest: null })).toBe('unchanged');
    expect(decideChange({ ...existing, status: 'failed' }, { tag: '1.0', digest: null })).toBe('retried');
  });
});

describe('store', () => {
  it('groups concurrent writes into one transaction and still isolates a failing one', async () => {
    const file = path.join(tempDir(), 'g.db');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (v INTEGER NOT NULL CHECK (v >= 0))');
    const reader = new Database(file, { readonly: true });
    const seenByReader: number[] = [];
    const group = createGroupCommit(db);
    const insert = (v: number) => () => {
      // A second connection sees only committed rows: if each write committed alone, it would see the earlier ones.
      seenByReader.push(reader.prepare('SELECT count(*) FROM t').pluck().get() as number);
      return db.prepare('INSERT INTO t (v) VALUES (?)').run(v).changes;
    };
    const outcomes = await Promise.allSettled([group.run(insert(1)), group.run(insert(-1)), group.run(insert(2))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(seenByReader.length).toBeGreaterThanOrEqual(3);
    expect(seenByReader.every((n) => n === 0)).toBe(true);
    expect(reader.prepare('SELECT v FROM t ORDER BY v').pluck().all()).toEqual([1, 2]);
  });

  it('records, supersedes and leaves identical repeats untouched', async () => {
    const store = openStore(path.join(tempDir(), 's.db'), { synchronous: 'full' });
    const [first] = await store.recordUpdates([update('1.0')], meta);
    expect(first!.change).toBe('created');
    const [again] = await store.recordUpdates([update('1.0')], { ...meta, at: meta.at + 1 });
    expect(again!.change).toBe('unchanged');
    expect(again!.target.updatedAt).toBe(meta.at);
    const [next] = await store.recordUpdates([update('1.1')], { ...meta, at: meta.at + 2 });
    expect(next!.change).toBe('superseded');
    expect(next!.target).toMatchObject({ id: first!.target.id, desiredTag: '1.1', generation: 2, status: 'pending' });
    expect(store.listEvents(first!.target.id).map((e) => [e.type, e.tag])).toEqual([
      ['requested', '1.0'],
      ['superseded', '1.0'],
      ['requested', '1.1'],
    ]);
    await store.close();
  });

  it('writes a batch atomically: a failure anywhere leaves nothing', async () => {
    const store = openStore(path.join(tempDir(), 'b.db'), { synchronous: 'full' });
    // A NULL tag violates NOT NULL on the second row, after the first was inserted.
    const bad = { ...update('x', 'gcr.io/acme/b'), tag: null as unknown as string };
    await expect(store.recordUpdates([update('1.0'), bad], meta)).rejects.toThrow(/NOT NULL/);
    expect(store.db.prepare('SELECT count(*) FROM targets').pluck().get()).toBe(0);
    expect(store.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(0);
    await store.close();
  });
});

describe('writer thread', () => {
  it('fails only the writes of a turn it cannot send, and keeps working', async () => {
    const { startWriter } = await import('../../shared/writer.ts');
    const file = path.join(tempDir(), 'w.db');
    openStore(file, { synchronous: 'full' }); // migrates
    const writer = startWriter(file, 'full');
    const unclonable = { ...update('1.0'), tag: (() => '1.0') as unknown as string };
    await expect(writer.record([unclonable], meta)).rejects.toThrow(/could not be cloned/);
    const [ok] = await writer.record([update('2.0')], meta);
    expect(ok).toMatchObject({ change: 'created', target: { desiredTag: '2.0' } });
    await writer.close();
  });
});
