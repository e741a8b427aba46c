/**
 * Delivery of signed events to one receiver (a webhook URL, the MQTT broker), decoupled from
 * what produced them: a bounded in-memory queue, one send at a time in order, retries with
 * exponential backoff and full jitter, and a dead letter — counted, logged, dropped — when a
 * receiver refuses for good, stays down through every retry, or falls so far behind that the
 * queue is full (a full queue drops queued `attestation_failed` events for locks, unlocks and
 * revocations first). A slow or dead receiver therefore costs the issuer a bounded amount of memory
 * and one timer; it never delays a join, a renewal or another receiver.
 *
 * Not persisted: events that are queued when the issuer stops are lost (counted at stop). The
 * audit log, from which every event is derived, stays the record (docs/events.md).
 */
import type { Logger } from '../../util/log.js';
import type { SigilEvent } from './event.js';

export interface RetryPolicy {
  /** The first retry waits up to this long; each next one up to twice as long (full jitter). */
  baseMs: number;
  /** No wait is longer than this. */
  maxMs: number;
  /** Sends per event, the first included; then it is a dead letter. */
  attempts: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1000, maxMs: 60_000, attempts: 8 };
/** Events waiting per receiver; the one that does not fit is a dead letter. */
export const DEFAULT_QUEUE_LIMIT = 1000;

/** What a full queue keeps over `attestation_failed` (see DeliveryQueue.push). */
const PRIORITY: ReadonlySet<SigilEvent['type']> = new Set([
  'instance_locked',
  'instance_unlocked',
  'certificate_revoked',
]);

/** A send's outcome the receiver decided: `permanent` failures are not retried (a 4xx other than 408/429). */
export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly permanent = false,
  ) {
    super(message);
  }
}

export interface EventSink {
  /** For metrics and logs (a webhook's origin, "mqtt"); never credentials. */
  readonly name: string;
  send(jws: string, event: SigilEvent): Promise<void>;
}

export interface DeliveryCounters {
  delivered(sink: string): void;
  failed(sink: string): void;
  deadLetter(sink: string, why: 'refused' | 'retries_exhausted' | 'queue_full' | 'stopped'): void;
}

interface Pending {
  jws: string;
  event: SigilEvent;
  tries: number;
}

export class DeliveryQueue {
  readonly #queue: Pending[] = [];
  #running = false;
  #stopped = false;
  #wait: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #idle: Array<() => void> = [];

  constructor(
    readonly sink: EventSink,
    private readonly o: {
      counters: DeliveryCounters;
      log: Logger;
      retry?: RetryPolicy;
      limit?: number;
      /** Math.random by default; tests pin the jitter. */
      random?: () => number;
    },
  ) {}

  get length(): number {
    return this.#queue.length;
  }

  push(jws: string, event: SigilEvent): void {
    if (this.#stopped) return this.o.counters.deadLetter(this.sink.name, 'stopped');
    if (this.#queue.length >= (this.o.limit ?? DEFAULT_QUEUE_LIMIT)) {
      // A full queue gives way to a lock, an unlock or a revocation: the newest queued
      // `attestation_failed` (not the one being sent) is dropped for it. One enrolled machine can
      // make its own failures as fast as it likes; it must not be able to crowd out what
      // happens to the others (review of issue #16).
      const victim = PRIORITY.has(event.type) ? this.#lastDroppable() : -1;
      const dropped = victim >= 0 ? this.#queue.splice(victim, 1)[0]!.event : event;
      this.o.log.warn(
        { sink: this.sink.name, event_id: dropped.id, type: dropped.type },
        'event queue full: dead letter',
      );
      this.o.counters.deadLetter(this.sink.name, 'queue_full');
      if (victim < 0) return;
    }
    this.#queue.push({ jws, event, tries: 0 });
    if (!this.#running) void this.#run();
  }

  /** The index of the newest queued event a full queue may drop for a priority one, or -1. */
  #lastDroppable(): number {
    // Index 0 may be in flight (its send is awaited while it stays at the head).
    for (let i = this.#queue.length - 1; i >= 1; i--) if (!PRIORITY.has(this.#queue[i]!.event.type)) return i;
    return -1;
  }

  /** Resolves when nothing is queued or being sent (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /** Stop sending; what is still queued is counted as dead letters. */
  stop(): void {
    this.#stopped = true;
    if (this.#wait) {
      clearTimeout(this.#wait.timer);
      this.#wait.wake();
    }
    for (const p of this.#queue.splice(0)) {
      this.o.log.warn({ sink: this.sink.name, event_id: p.event.id }, 'issuer stopping: event not delivered');
      this.o.counters.deadLetter(this.sink.name, 'stopped');
    }
  }

  async #run(): Promise<void> {
    this.#running = true;
    const retry = this.o.retry ?? DEFAULT_RETRY;
    while (!this.#stopped && this.#queue.length > 0) {
      const p = this.#queue[0]!;
      p.tries++;
      try {
        await this.sink.send(p.jws, p.event);
        this.#queue.shift();
        this.o.counters.delivered(this.sink.name);
        continue;
      } catch (err) {
        this.o.counters.failed(this.sink.name);
        const permanent = err instanceof DeliveryError && err.permanent;
        const last = permanent || p.tries >= retry.attempts;
        const fields = { sink: this.sink.name, event_id: p.event.id, type: p.event.type, tries: p.tries };
        if (last) {
          this.#queue.shift();
          this.o.log.warn({ ...fields, err: (err as Error).message }, 'event not delivered: dead letter');
          this.o.counters.deadLetter(this.sink.name, permanent ? 'refused' : 'retries_exhausted');
          continue;
        }
        this.o.log.info({ ...fields, err: (err as Error).message }, 'event delivery failed; will retry');
        // Full jitter (a random wait up to the exponential bound): receivers coming back after an
        // outage are not hit by every issuer's retries in the same instant.
        const bound = Math.min(retry.maxMs, retry.baseMs * 2 ** (p.tries - 1));
        await this.#sleep(Math.floor((this.o.random ?? Math.random)() * bound));
      }
    }
    this.#running = false;
    for (const r of this.#idle.splice(0)) r();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wait = undefined;
        resolve();
      }, ms);
      timer.unref();
      this.#wait = { timer, wake: resolve };
    });
  }
}
