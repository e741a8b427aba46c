/**
 * A fixed set of worker_threads, each running the same module, driven by request/answer
 * messages. Load generators spread their clients over workers so that the generator's own CPU
 * (TLS, JSON, signatures) is not one event loop that saturates before the server does.
 *
 * A .ts module is loaded through ./ts-worker.mjs, which registers tsx in the worker first
 * (worker_threads do not run the parent's `--import tsx`).
 */
import { parentPort, Worker, workerData } from 'node:worker_threads';

interface Envelope<T> {
  id: number;
  ok?: boolean;
  value?: T;
  error?: string;
  msg?: unknown;
}

export class WorkerPool<Req, Res> {
  readonly #workers: Worker[];
  readonly #pending = new Map<number, { resolve: (v: Res) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #failed: Error | undefined;

  private constructor(workers: Worker[]) {
    this.#workers = workers;
    for (const w of workers) {
      w.on('message', (m: Envelope<Res>) => {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.ok) p.resolve(m.value as Res);
        else p.reject(new Error(m.error ?? 'worker failed'));
      });
      const fail = (e: Error): void => {
        this.#failed ??= e;
        for (const p of this.#pending.values()) p.reject(e);
        this.#pending.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (code !== 0) fail(new Error(`a load-generator worker exited with code ${code}`));
      });
    }
  }

  /** Start `n` workers of `module`; worker i reads `data(i)` with {@link poolWorkerData}. */
  static start<Req, Res>(module: URL, n: number, data: (i: number) => unknown): WorkerPool<Req, Res> {
    const entry = module.pathname.endsWith('.ts') ? new URL('./ts-worker.mjs', import.meta.url) : module;
    return new WorkerPool(
      Array.from({ length: n }, (_, i) => new Worker(entry, { workerData: { entry: module.href, data: data(i) } })),
    );
  }

  get size(): number {
    return this.#workers.length;
  }

  /** One request to worker i; rejects if the worker throws or any worker died. */
  call(i: number, msg: Req): Promise<Res> {
    if (this.#failed) return Promise.reject(this.#failed);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#workers[i]!.postMessage({ id, msg } satisfies Envelope<Res>);
    });
  }

  /** The same kind of request to every worker (`msg(i)` for worker i), answers in worker order. */
  all(msg: (i: number) => Req): Promise<Res[]> {
    return Promise.all(this.#workers.map((_, i) => this.call(i, msg(i))));
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}

/** Worker side: the data {@link WorkerPool.start} gave this worker. */
export function poolWorkerData<T>(): T {
  return (workerData as { data: T }).data;
}

/** Worker side: answer each request of the pool with `handle` (one at a time, in order). */
export function serveWorker<Req, Res>(handle: (msg: Req) => Promise<Res>): void {
  const port = parentPort;
  if (!port) throw new Error('serveWorker must run inside a worker_thread');
  let chain = Promise.resolve();
  port.on('message', (m: Envelope<Res>) => {
    chain = chain.then(async () => {
      try {
        port.postMessage({ id: m.id, ok: true, value: await handle(m.msg as Req) } satisfies Envelope<Res>);
      } catch (e) {
        port.postMessage({ id: m.id, ok: false, error: (e as Error)?.stack ?? String(e) } satisfies Envelope<Res>);
      }
    });
  });
}
