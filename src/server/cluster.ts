/**
 * `sigil server start --workers N` (issue #15, "both cores of one machine"): N issuer processes
 * on one machine sharing one listener, through node:cluster.
 *
 * - The primary process serves nothing itself: it forks N workers, each of which runs the same
 *   `server start` command and so becomes a full issuer (its own IssuerService: pool, change
 *   feed, serving key, timers) on the SAME PostgreSQL store. Their `listen()` on one address is
 *   one socket held by the primary, which hands each new connection to the next worker in turn
 *   (cluster's round-robin: a worker busy with a long request does not hold the accept queue).
 *   MQTT needs nothing more: each worker joins the responder's shared subscription.
 * - Everything several issuers on one database must agree on is already the database's (single
 *   use, idempotent answers, generations, the audit chain, policy and locks through
 *   LISTEN/NOTIFY: docs/store-postgres.md); a worker is one more issuer, nothing is shared in memory.
 * - SQLite is refused, measured (docs/scaling.md "Several processes on one machine"): it stays
 *   correct with N processes on one file (every guarantee is taken under the file's write lock,
 *   test/unit/store/multiprocess.test.ts), but it does not pay. A renewal's transaction holds
 *   that lock for its whole group, signatures included, so the workers take turns instead of
 *   sharing the cores; the one waiting sleeps inside BEGIN IMMEDIATE (SQLite's busy handler,
 *   synchronous: its whole event loop stops; one wait took 1.75 s), and the groups get smaller.
 *   With 2 workers: 14–39% more issuer CPU per renewal, 12–34% fewer renewals/s at saturation,
 *   p99 of 0.9–2.5 s instead of 0.1–0.3 s (a quiet machine and a shared one).
 * - A worker that dies (crash, OOM kill, `kill -9`) is replaced after a short pause; one that
 *   keeps dying (CRASH_LIMIT deaths within CRASH_WINDOW_MS, e.g. a bad config that only shows at
 *   start) stops the whole issuer with an error instead of restarting forever.
 * - SIGTERM / SIGINT to the primary stop every worker gracefully (each finishes its in-flight
 *   requests and writes its final audit checkpoint), then the primary exits.
 * - SIGHUP to the primary is passed to every worker: each reads its credential keys again. A
 *   worker whose own key watch took a step says so, and the primary passes SIGHUP to the others.
 */
import cluster, { type Worker } from 'node:cluster';
import { SigilError } from '../errors.js';

export const MAX_WORKERS = 64;
/** How long a replaced worker waits before it is forked again. */
const RESTART_DELAY_MS = 500;
const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 60_000;

/** `--workers` as a number, refused unless 1..MAX_WORKERS and (for more than one) a PostgreSQL store. */
export function parseWorkers(v: string, storeKind: 'sqlite' | 'postgres'): number {
  if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > MAX_WORKERS)
    throw new SigilError('config_invalid', `--workers must be a whole number from 1 to ${MAX_WORKERS}, got "${v}"`);
  const n = Number(v);
  if (n > 1 && storeKind !== 'postgres')
    throw new SigilError(
      'config_invalid',
      `--workers ${n} needs --store postgres://… (several processes on one store); the SQLite store is written by one process: several take turns on its write lock, each holding it for a whole group of renewals, so measured with 2 workers they cost 14–39% more CPU per renewal, served 12–34% fewer renewals/s, and a worker waiting for the lock stalled for up to 1.75 s (docs/scaling.md)`,
    );
  return n;
}

/**
 * True in a process forked by {@link superviseWorkers}: it should run the issuer itself. The
 * channel to the supervisor then stops counting as work that keeps the process alive (its
 * listening socket and timers do): a worker whose issuer failed to start, or has stopped, exits
 * instead of waiting on the channel forever.
 */
export function isClusterWorker(): boolean {
  if (cluster.isWorker) workerChannel()?.unref?.();
  return cluster.isWorker;
}

/**
 * Run `start` (the issuer's start, whose `listen()` a worker asks the primary for) with the
 * channel to the supervisor counted as work again: the primary answers `listen()` with the shared
 * socket over that channel, and until it does nothing else may keep the worker alive. On
 * PostgreSQL the pool's sockets happened to; on SQLite nothing did, and the worker exited (13,
 * unsettled top-level await) before the answer came. Uncounted again once `start` settles.
 */
export async function whileStarting<T>(start: () => Promise<T>): Promise<T> {
  const channel = cluster.isWorker ? workerChannel() : undefined;
  channel?.ref?.();
  try {
    return await start();
  } finally {
    channel?.unref?.();
  }
}

function workerChannel(): { ref?: () => void; unref?: () => void } | undefined {
  return process.channel as { ref?: () => void; unref?: () => void } | undefined;
}

/** A worker tells the primary it listens (the primary prints one line once all do). */
export function reportListening(url: string): void {
  if (cluster.isWorker) process.send?.({ sigil: 'listening', url });
}

/**
 * A worker tells the primary its issuer was retired or revoked (docs/issuers.md): the primary
 * stops every worker instead of restarting them (each would be refused at start).
 */
export function reportRetired(status: string): void {
  if (cluster.isWorker) process.send?.({ sigil: 'retired', status });
}

/**
 * A worker tells the primary its key watch took a rotate-key step (or a withdrawal from the
 * store): the primary passes SIGHUP to the other workers, so the workers of one issuer publish
 * and sign with the same keys within moments instead of up to two polls apart.
 */
export function reportKeysChanged(): void {
  if (cluster.isWorker) process.send?.({ sigil: 'keys-changed' });
}

export interface SuperviseOptions {
  workers: number;
  /** A line for the operator (stdout). */
  say: (line: string) => void;
  /** Called once every worker listens for the first time. */
  onAllListening?: (url: string) => void;
}

/**
 * In the primary: fork the workers and supervise them until SIGTERM/SIGINT; resolves once every
 * worker has exited after the signal, rejects (SigilError) when workers keep dying.
 */
export function superviseWorkers(o: SuperviseOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let stopping = false;
    const deaths: number[] = [];
    const slotOf = new Map<Worker, number>();
    const listening = new Set<number>();
    let announced = false;
    /** When a worker last reported a key change (0: never). */
    let keysChangedAt = 0;

    const fork = (slot: number): void => {
      const w = cluster.fork({ SIGIL_WORKER: String(slot) });
      const forkedAt = Date.now();
      slotOf.set(w, slot);
      // A message to a worker that is exiting fails (EPIPE); its 'exit' follows and is handled there.
      w.on('error', () => undefined);
      w.on('message', (m: { sigil?: string; url?: string; status?: string }) => {
        if (m?.sigil === 'retired' && !stopping) {
          failure = new SigilError(
            'issuer_retired',
            `this issuer is ${m.status} in the issuer registry; stopping every worker`,
          );
          o.say(`sigil issuer worker ${slot} reports the issuer ${m.status}: stopping every worker`);
          stopAll();
          return;
        }
        if (m?.sigil === 'keys-changed') {
          keysChangedAt = Date.now();
          // Not back to the sender: it has read them. A SIGHUP'd worker does not report again.
          for (const [other, otherSlot] of slotOf)
            if (other !== w && listening.has(otherSlot)) other.process.kill('SIGHUP');
          return;
        }
        if (m?.sigil !== 'listening') return;
        o.say(`sigil issuer worker ${slot} (pid ${w.process.pid}) listening on ${m.url}`);
        listening.add(slot);
        // Still starting when another worker reported a key change: it may have read its keys
        // before the step; read them again now rather than at its own next poll.
        if (keysChangedAt >= forkedAt) w.process.kill('SIGHUP');
        if (!announced && listening.size === o.workers) {
          announced = true;
          o.onAllListening?.(m.url ?? '');
        }
      });
    };

    const finish = (err?: SigilError): void => {
      // The workers not yet exited (cluster.workers also waits for each one's disconnect).
      if (slotOf.size > 0) return;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onReload);
      if (err) reject(err);
      else resolve();
    };
    let failure: SigilError | undefined;

    cluster.on('exit', (w, code, signal) => {
      const slot = slotOf.get(w) ?? 0;
      slotOf.delete(w);
      listening.delete(slot);
      if (stopping) return finish(failure);
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! < now - CRASH_WINDOW_MS) deaths.shift();
      if (deaths.length >= CRASH_LIMIT) {
        failure = new SigilError(
          'internal',
          `issuer workers died ${deaths.length} times within ${CRASH_WINDOW_MS / 1000} s (last: worker ${slot}, ${signal ?? `exit ${code}`}); stopping (see the workers' log lines above)`,
        );
        stopAll();
        return;
      }
      o.say(`sigil issuer worker ${slot} (pid ${w.process.pid}) died (${signal ?? `exit ${code}`}); starting it again`);
      // Not unref()ed: while every worker is down this timer is what keeps the supervisor alive.
      setTimeout(() => stopping || fork(slot), RESTART_DELAY_MS);
    });

    const stopAll = (): void => {
      stopping = true;
      const workers = [...slotOf.keys()];
      if (workers.length === 0) return finish(failure);
      // SIGTERM, not cluster's disconnect: each worker's own handler stops its IssuerService gracefully.
      for (const w of workers) w.process.kill('SIGTERM');
    };
    const onSignal = (): void => stopAll();
    // SIGHUP (systemctl reload): every worker reads its credential keys again (server/key-reload.ts).
    // Only to workers that listen: one still starting reads its keys when it starts anyway.
    const onReload = (): void => {
      for (const [w, slot] of slotOf) if (listening.has(slot)) w.process.kill('SIGHUP');
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', onReload);

    for (let slot = 1; slot <= o.workers; slot++) fork(slot);
  });
}
