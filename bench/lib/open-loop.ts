/**
 * Open-loop load: requests arrive on a schedule fixed before the run (evenly spaced, or a Poisson
 * process), whatever the server's latency. A closed loop (each client sends its next request when
 * the last one is answered) slows down with the server and so hides queueing: its latencies are
 * those of a server never offered more than it can take ("coordinated omission"). Here a late
 * answer does not delay the next arrival, and every latency is measured from the arrival's
 * SCHEDULED time, so time spent waiting — for a free client, or for this event loop — counts.
 */

export type ArrivalKind = 'poisson' | 'even';

/** A small seeded PRNG (mulberry32), so a schedule can be replayed exactly; uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Arrival times (ms, ascending) in [startMs, startMs + durationMs) at `rate` per second: `even`
 * spaces them 1000/rate apart (the first at startMs); `poisson` draws exponential gaps with mean
 * 1000/rate (the first gap too), the arrivals of many independent clients.
 */
export function arrivalTimes(p: {
  rate: number;
  kind: ArrivalKind;
  startMs: number;
  durationMs: number;
  random?: () => number;
}): Float64Array {
  if (!(p.rate > 0) || !Number.isFinite(p.rate)) throw new RangeError(`rate must be > 0 per second, got ${p.rate}`);
  if (!(p.durationMs >= 0)) throw new RangeError(`duration must be ≥ 0 ms, got ${p.durationMs}`);
  const gap = 1000 / p.rate;
  const end = p.startMs + p.durationMs;
  if (p.kind === 'even') {
    const n = Math.ceil(p.durationMs / gap - 1e-9);
    return Float64Array.from({ length: Math.max(0, n) }, (_, i) => p.startMs + i * gap);
  }
  const random = p.random ?? Math.random;
  const out: number[] = [];
  // 1 - U is in (0, 1], so the log is finite.
  for (let t = p.startMs - gap * Math.log(1 - random()); t < end; t -= gap * Math.log(1 - random())) out.push(t);
  return Float64Array.from(out);
}

export interface OpenLoopResult {
  /** Arrivals that found no idle client and waited for one (their wait is in their latency). */
  waitedForClient: number;
  /** How late each request was handed to a client after its scheduled time (ms), in send order. */
  lagMs: Float64Array;
}

/**
 * Play `arrivals` over `clients`: each arrival goes to the longest-idle client (a client runs one request
 * at a time — a Sigil agent cannot renew again before it holds the answer), or waits in FIFO
 * order for the next client to become free. `send(client, scheduledMs)` does one request and
 * records its latency from `scheduledMs`; it must not reject. Resolves when every arrival was
 * sent and answered.
 */
export function runOpenLoop<C>(p: {
  arrivals: Float64Array;
  clients: readonly C[];
  send: (client: C, scheduledMs: number) => Promise<void>;
  clock: () => number;
}): Promise<OpenLoopResult> {
  const { arrivals, send, clock } = p;
  if (p.clients.length === 0) throw new RangeError('open loop needs at least one client');
  const idle = [...p.clients];
  const backlog: number[] = [];
  let backlogHead = 0;
  const lag = new Float64Array(arrivals.length);
  let sent = 0;
  let answered = 0;
  let next = 0;
  let waited = 0;
  return new Promise((resolve) => {
    const finishIfDone = (): void => {
      if (answered === arrivals.length) resolve({ waitedForClient: waited, lagMs: lag });
    };
    const dispatch = (client: C, at: number): void => {
      lag[sent++] = clock() - at;
      void send(client, at).then(() => {
        answered++;
        if (backlogHead < backlog.length) dispatch(client, backlog[backlogHead++]!);
        else idle.push(client);
        finishIfDone();
      });
    };
    const tick = (): void => {
      const now = clock();
      while (next < arrivals.length && arrivals[next]! <= now) {
        const at = arrivals[next++]!;
        const client = idle.shift(); // the longest idle: renewals spread evenly over the clients
        if (client !== undefined) dispatch(client, at);
        else {
          backlog.push(at);
          waited++;
        }
      }
      if (next < arrivals.length) setTimeout(tick, Math.max(0, arrivals[next]! - clock()));
    };
    tick();
    finishIfDone();
  });
}
