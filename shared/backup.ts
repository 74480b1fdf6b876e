// An online backup of the database: SQLite's backup API copies a consistent snapshot page by page
// while the service goes on reading and writing (WAL), then the copy is checked on its own.
import { existsSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export interface BackupResult {
  file: string;
  bytes: number;
  targets: number;
  events: number;
  /** The last migration the copy holds: a restore applies any newer one at start-up. */
  migration: string | null;
}

/** Copies the database at `source` to `destination` (which must not exist) and verifies the copy. */
export async function backupDatabase(source: string, destination: string): Promise<BackupResult> {
  if (!existsSync(source)) throw new Error(`no database at ${source}`);
  if (existsSync(destination)) throw new Error(`${destination} exists; a backup never overwrites a file`);
  if (!existsSync(path.dirname(path.resolve(destination)))) throw new Error(`the folder of ${destination} does not exist`);
  try {
    // Not readonly: a reader of a WAL database may need to create the shared-memory file. It writes nothing.
    const db = new Database(source, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 5000');
      await db.backup(destination);
    } finally {
      db.close();
    }
    return verify(destination);
  } catch (err) {
    // A partial or damaged copy must not be mistaken for a backup.
    rmSync(destination, { force: true });
    throw err;
  }
}

/** Opens the copy on its own: SQLite's integrity check, then what it holds. */
function verify(file: string): BackupResult {
  const copy = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const integrity = copy.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') throw new Error(`the copy at ${file} fails SQLite's integrity check: ${String(integrity)}`);
    const count = (table: string) => copy.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
    const migration = copy.prepare('SELECT name FROM schema_migrations ORDER BY version DESC LIMIT 1').pluck().get() as string | undefined;
    return { file, bytes: statSync(file).size, targets: count('targets'), events: count('events'), migration: migration ?? null };
  } finally {
    copy.close();
  }
}
