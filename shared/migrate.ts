// Schema migrations: `migrations/NNNN_name.sql`, applied in order, each in its
// own transaction, recorded with a checksum so an edited migration is caught.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from 'better-sqlite3';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/** Reads the migration files of a folder, in version order; refuses gaps and stray names. */
export function readMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
      if (!match) throw new Error(`${path.join(dir, file)}: migration files are named NNNN_lowercase_name.sql`);
      const sql = readFileSync(path.join(dir, file), 'utf8');
      return {
        version: Number(match[1]),
        name: file,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`${dir}: expected migration ${String(i + 1).padStart(4, '0')}, found ${m.name}`);
  });
  return migrations;
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

function applied(db: Database): AppliedRow[] {
  return db.prepare('SELECT version, name, checksum FROM schema_migrations ORDER BY version').all() as AppliedRow[];
}

/** Migrations not yet applied; throws when the database is ahead of this code or a migration was edited. */
export function pendingMigrations(db: Database, migrations: Migration[]): Migration[] {
  const done = applied(db);
  for (const row of done) {
    const known = migrations[row.version - 1];
    if (!known) {
      throw new Error(
        `the database is at migration ${row.name}, which this version of image-updater does not know: it was written by a newer version`,
      );
    }
    if (known.checksum !== row.checksum) {
      throw new Error(`migration ${known.name} was changed after it was applied to this database; restore the original file`);
    }
  }
  return migrations.slice(done.length);
}

/** Applies every pending migration; safe to run from several processes at once. Returns the names applied. */
export function migrate(db: Database, migrations: Migration[] = readMigrations()): string[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
  ) STRICT`);
  const names: string[] = [];
  // A migration may rebuild a table (SQLite cannot alter a constraint in place): with foreign keys on,
  // dropping the old table would cascade into every table that references it. So they are off while
  // migrating (this can only change outside a transaction) and checked before the commit.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    // IMMEDIATE takes the write lock first, so a second process waits and then finds nothing to do.
    db.transaction(() => {
      for (const m of pendingMigrations(db, migrations)) {
        db.exec(m.sql);
        db.prepare('INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)').run(
          m.version,
          m.name,
          m.checksum,
          Date.now(),
        );
        names.push(m.name);
      }
      const broken = db.pragma('foreign_key_check') as unknown[];
      if (broken.length > 0) throw new Error(`the migrations would leave ${broken.length} rows whose references are broken; nothing was applied`);
    }).immediate();
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON');
  }
  return names;
}
