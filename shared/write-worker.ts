// The writer thread. It owns the connection that records requests, so the
// event loop that serves HTTP never waits for an fsync; requests that arrive
// while one group is being fsynced are committed together in the next.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase, type Synchronous } from './database.ts';
import { createGroupCommit } from './group-commit.ts';
import { createUpdateRecorder, type RecordResult, type RequestMeta, type UpdateRequest } from './record-updates.ts';

/** What the main thread posts: the requests of one event-loop turn, or the order to close. */
export type WriterMessage = { requests: Array<{ id: number; updates: UpdateRequest[]; meta: RequestMeta }> } | { close: number };
/** What comes back: one reply per request (and one for the close). */
export type WriterReply = { id: number; results: RecordResult[] } | { id: number; error: string };

const { file, synchronous } = workerData as { file: string; synchronous: Synchronous };
const db = openDatabase(file, synchronous);
const record = createUpdateRecorder(db);
const group = createGroupCommit(db);
const port = parentPort!;

port.on('message', (message: WriterMessage) => {
  if ('close' in message) {
    // Replies to earlier requests are queued before this one: they are all out when it is.
    void group.drain().then(() => {
      db.close();
      port.postMessage([{ id: message.close, results: [] }] satisfies WriterReply[]);
      port.close();
    });
    return;
  }
  const settled = message.requests.map(({ id, updates, meta }) =>
    group.run(() => record(updates, meta)).then(
      (results): WriterReply => ({ id, results }),
      (err: unknown): WriterReply => ({ id, error: err instanceof Error ? err.message : String(err) }),
    ),
  );
  void Promise.all(settled).then((replies) => port.postMessage(replies));
});
