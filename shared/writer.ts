// The main thread's side of the writer thread: posts a request's updates and
// resolves once the worker reports them committed (and so fsynced).
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Synchronous } from './database.ts';
import type { RecordResult, RequestMeta, UpdateRequest } from './record-updates.ts';
import type { WriterReply, WriterRequest } from './write-worker.ts';

const WORKER = new URL('./write-worker.ts', import.meta.url);

/** Starts the writer thread for a database file (already migrated by the caller). */
export function startWriter(file: string, synchronous: Synchronous) {
  const pending = new Map<number, { resolve: (r: RecordResult[]) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let closing = false;
  let worker: Worker | undefined;

  function failAll(error: Error): void {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  }

  function spawn(): Worker {
    const w = new Worker(WORKER, { workerData: { file, synchronous } });
    w.on('message', (message: WriterReply) => {
      const p = pending.get(message.id);
      pending.delete(message.id);
      if ('error' in message) p?.reject(new Error(message.error));
      else p?.resolve(message.results);
    });
    w.on('error', (err) => failAll(err));
    w.on('exit', (code) => {
      // An unexpected exit fails what was in flight; the next write starts a new thread.
      if (worker === w) worker = undefined;
      if (!closing) failAll(new Error(`the database writer thread exited with code ${code}`));
    });
    return w;
  }

  function send(message: WriterRequest): Promise<RecordResult[]> {
    worker ??= spawn();
    const w = worker;
    return new Promise((resolve, reject) => {
      pending.set(message.id, { resolve, reject });
      w.postMessage(message);
    });
  }

  worker = spawn();
  return {
    /** Records a request's updates atomically; resolves once durable. */
    record(updates: UpdateRequest[], meta: RequestMeta): Promise<RecordResult[]> {
      if (closing) return Promise.reject(new Error('the store is closed'));
      return send({ id: nextId++, updates, meta });
    },
    /** Commits what is queued, closes the writer's connection and ends the thread. */
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      const w = worker;
      if (!w) return;
      const exited = once(w, 'exit');
      await send({ id: nextId++, close: true });
      await exited;
    },
  };
}
