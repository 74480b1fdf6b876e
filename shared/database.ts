// One SQLite connection, set up the same way wherever it is opened: the
// main thread reads, the writer thread (write-worker.ts) writes.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { TargetStatus } from './desired-state.ts';

export type Synchronous = 'full' | 'normal';

/** The desired and applied state of one (repository, branch, image, keyword). */
export interface Target {
  id: number;
  repository: string;
  branch: string;
  image: string;
  keyword: string;
  desiredTag: string;
  desiredDigest: string | null;
  generation: number;
  batchId: string | null;
  requestedBy: string;
  requestedAt: number;
  requestTrace: string | null;
  status: TargetStatus;
  attempts: number;
  nextAttemptAt: number;
  lastErrorCode: string | null;
  lastErrorMessage: string | null;
  appliedTag: string | null;
  appliedDigest: string | null;
  appliedCommit: string | null;
  appliedAt: number | null;
  /** The pull request that carries (or carried) the desired tag, in pull-request write-back. */
  proposalNumber: number | null;
  proposalUrl: string | null;
  createdAt: number;
  updatedAt: number;
}

/** One entry of a target's audit trail. */
export interface TargetEvent {
  id: number;
  targetId: number;
  at: number;
  type: string;
  tag: string | null;
  digest: string | null;
  message: string | null;
  details: Record<string, unknown> | null;
  traceId: string | null;
}

export const COLUMNS = `id, repository, branch, image, keyword, desired_tag AS desiredTag, desired_digest AS desiredDigest,
  generation, batch_id AS batchId, requested_by AS requestedBy, requested_at AS requestedAt,
  request_trace AS requestTrace, status, attempts, next_attempt_at AS nextAttemptAt,
  last_error_code AS lastErrorCode, last_error_message AS lastErrorMessage, applied_tag AS appliedTag,
  applied_digest AS appliedDigest, applied_commit AS appliedCommit, applied_at AS appliedAt,
  proposal_number AS proposalNumber, proposal_url AS proposalUrl, created_at AS createdAt, updated_at AS updatedAt`;

/** Opens (creating its folder if needed) a database file with our pragmas and SQL functions. */
export function openDatabase(file: string, synchronous: Synchronous): Database.Database {
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // FULL: every commit is fsynced before it returns, so an accepted request survives power loss.
  db.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const regexCache = new Map<string, RegExp>();
  db.function('regexp', { deterministic: true }, (pattern, value) => {
    let re = regexCache.get(pattern as string);
    if (!re) regexCache.set(pattern as string, (re = new RegExp(pattern as string)));
    return re.test(String(value)) ? 1 : 0;
  });
  return db;
}
