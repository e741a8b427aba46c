/**
 * WAL checkpoints off the event loop (issue #14). SQLite's autocheckpoint runs inside the COMMIT
 * that crosses wal_autocheckpoint pages: it copies those pages into the database file and fsyncs
 * the WAL and the file, on the one thread that also serves every request. The bench's probe
 * measured those COMMITs at 11–13 ms (p99 of all group commits; up to 30–60 ms on a shared
 * machine), one every ~50 group commits under open-loop load: requests arriving meanwhile wait.
 *
 * A busy store hands that work to a worker thread with a connection of its own, which runs a
 * PASSIVE checkpoint every {@link CHECKPOINT_EVERY_MS}: it copies what is committed and never
 * waits for, or blocks, the writer or the readers (sqlite.org/c3ref/wal_checkpoint_v2.html).
 * Nothing about durability changes: a COMMIT writes its WAL frames as before (synchronous=NORMAL,
 * ./db.ts) and an answer is still sent only after it; a checkpoint only moves committed pages from
 * the WAL into the database file. The writer keeps an autocheckpoint as a safety net
 * ({@link SAFETY_NET_PAGES}): if the worker falls behind or dies, the WAL stays bounded, and the
 * writer's own checkpoint then has little left to copy.
 *
 * The worker is eval'd CommonJS (better-sqlite3 is CommonJS and the code must run the same from
 * dist/ and from the TypeScript sources under test); it gets the module's resolved path.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the worker checkpoints. */
export const CHECKPOINT_EVERY_MS = 200;
/** The writer's autocheckpoint while the worker runs (SQLite's default, 1000, otherwise). */
export const SAFETY_NET_PAGES = 10_000;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { fileMustExist: true });
// Never wait for a lock: a checkpoint that finds one busy is simply tried at the next tick.
db.pragma('busy_timeout = 0');
let checkpoints = 0;
const tick = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    checkpoints++;
  } catch {
    // busy or an I/O error: the next tick tries again; the writer's safety net bounds the WAL
  }
};
const timer = setInterval(tick, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m === 'count') return parentPort.postMessage({ checkpoints });
  clearInterval(timer);
  db.close();
  parentPort.postMessage({ checkpoints, closed: true });
  parentPort.close();
});
parentPort.postMessage({ ready: true });
`;

export class BackgroundCheckpointer {
  private readonly worker: Worker;
  private stopped: Promise<void> | undefined;
  private exited = false;
  /** Settles when the worker has opened its connection (rejects if it could not). */
  readonly ready: Promise<void>;

  /** Start a worker checkpointing the database at `path` (WAL mode, already migrated). */
  constructor(path: string, everyMs = CHECKPOINT_EVERY_MS) {
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, everyMs, sqlite } });
    // Never keeps the process alive on its own.
    this.worker.unref();
    this.worker.once('exit', () => (this.exited = true));
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('message', () => resolve());
      this.worker.once('error', reject);
      this.worker.once('exit', () => reject(new Error('the checkpoint worker exited before it was ready')));
    });
  }

  /** Called once if the worker fails or exits before stop(): the owner restores SQLite's own checkpoints. */
  onFailure(fn: (err: unknown) => void): void {
    this.worker.once('error', fn);
    this.worker.once('exit', (code) => {
      if (!this.stopped) fn(new Error(`the checkpoint worker exited (code ${code})`));
    });
  }

  /** Checkpoints run so far (for tests). */
  count(): Promise<number> {
    return new Promise((resolve) => {
      this.worker.once('message', (m: { checkpoints: number }) => resolve(m.checkpoints));
      this.worker.postMessage('count');
    });
  }

  /** Stop the timer, close the worker's connection, wait for the thread to end. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      this.worker.once('exit', () => resolve());
      // Unref'd so that it never keeps a process alive; while it is being stopped it must, or a
      // process whose last work is closing the store would exit before the worker closed its connection.
      this.worker.ref();
      this.worker.postMessage('stop');
    });
    return this.stopped;
  }
}
