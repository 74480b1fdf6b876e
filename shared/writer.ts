// The main thread's side of the writer thread: collects the writes of one
// event-loop turn into one message, and resolves each once the worker reports
// it committed (and so fsynced).
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Synchronous } from './database.ts';
import type { RecordResult, RequestMeta, UpdateRequest } from './record-updates.ts';
import type { WriterMessage, WriterReply } from './write-worker.ts';

const WORKER = new URL('./write-worker.ts', import.meta.url);

type Request = { id: number; updates: UpdateRequest[]; meta: RequestMeta };

/** Starts the writer thread for a database file (already migrated by the caller). */
export function startWriter(file: string, synchronous: Synchronous) {
  const pending = new Map<number, { resolve: (r: RecordResult[]) => void; reject: (e: Error) => void }>();
  let outbox: Request[] = [];
  let scheduled: NodeJS.Immediate | undefined;
  let nextId = 1;
  let closing = false;
  let worker: Worker | undefined;

  function failAll(error: Error): void {
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  }

  function spawn(): Worker {
    // The young generation of the main thread's flags (bin/image-updater.ts: 3 × 8 MB semi-spaces).
    const w = new Worker(WORKER, { workerData: { file, synchronous }, resourceLimits: { maxYoungGenerationSizeMb: 24 } });
    w.on('message', (replies: WriterReply[]) => {
      for (const reply of replies) {
        const p = pending.get(reply.id);
        pending.delete(reply.id);
        if ('error' in reply) p?.reject(new Error(reply.error));
        else p?.resolve(reply.results);
      }
    });
    w.on('error', (err) => failAll(err));
    w.on('exit', (code) => {
      // An unexpected exit fails what was in flight; the next write starts a new thread.
      if (worker === w) worker = undefined;
      if (!closing) failAll(new Error(`the database writer thread exited with code ${code}`));
    });
    return w;
  }

  function post(message: WriterMessage): void {
    worker ??= spawn();
    worker.postMessage(message);
  }

  function flush(): void {
    scheduled = undefined;
    const requests = outbox;
    outbox = [];
    try {
      post({ requests });
    } catch (err) {
      // Runs from setImmediate: a throw here (a value that cannot be cloned) would end the process.
      for (const r of requests) {
        pending.get(r.id)?.reject(err as Error);
        pending.delete(r.id);
      }
    }
  }

  worker = spawn();
  return {
    /** Records a request's updates atomically; resolves once durable. */
    record(updates: UpdateRequest[], meta: RequestMeta): Promise<RecordResult[]> {
      if (closing) return Promise.reject(new Error('the store is closed'));
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        outbox.push({ id, updates, meta });
        scheduled ??= setImmediate(flush);
      });
    },
    /** Commits what is queued, closes the writer's connection and ends the thread. */
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      if (scheduled) {
        clearImmediate(scheduled);
        flush();
      }
      const w = worker;
      if (!w) return;
      const exited = once(w, 'exit');
      const id = nextId++;
      const closed = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
      post({ close: id });
      await closed;
      await exited;
    },
  };
}
