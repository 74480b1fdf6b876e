// The writer thread. It owns the connection that records requests, so the
// event loop that serves HTTP never waits for an fsync; messages that arrive
// while one group is being fsynced are committed together in the next.
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase, type Synchronous } from './database.ts';
import { createGroupCommit } from './group-commit.ts';
import { createUpdateRecorder, type RecordResult, type RequestMeta, type UpdateRequest } from './record-updates.ts';

export type WriterRequest = { id: number; updates: UpdateRequest[]; meta: RequestMeta } | { id: number; close: true };
export type WriterReply = { id: number; results: RecordResult[] } | { id: number; error: string };

const { file, synchronous } = workerData as { file: string; synchronous: Synchronous };
const db = openDatabase(file, synchronous);
const record = createUpdateRecorder(db);
const group = createGroupCommit(db);
const port = parentPort!;
const reply = (message: WriterReply) => port.postMessage(message);

port.on('message', (message: WriterRequest) => {
  if ('close' in message) {
    // Replies to earlier messages are queued before this one: they are all out when it is.
    void group.drain().then(() => {
      db.close();
      reply({ id: message.id, results: [] });
      port.close();
    });
    return;
  }
  group.run(() => record(message.updates, message.meta)).then(
    (results) => reply({ id: message.id, results }),
    (err: unknown) => reply({ id: message.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
