/**
 * One tail of the audit log, shared by everything the issuer derives from it: the CRL
 * (../crl/publisher.ts: a lock or unlock changes the revoked set) and pushed events
 * (./publisher.ts: the same rows become signed events). The audit log is the one place where
 * every lock, unlock and refusal is written in the transaction that makes it — by this issuer,
 * by `sigil ctl --data-dir` in another process, or by another issuer on the same PostgreSQL
 * store — so watching it needs no hook in any of those paths.
 *
 * The tail starts at the head when first looked at (history is not replayed: it was derived, or
 * announced, by whoever ran then), and hands each later row to every subscriber once, in
 * sequence order. Looks are serialised: a caller of {@link AuditWatcher.poll} always gets a look
 * that started after its call, so a row committed before the call is delivered when it returns.
 */
import type { AuditRecord, AuditStore } from '../store/types.js';

/**
 * Audit rows are stamped when their transaction was prepared, so one can commit after a row with
 * a later stamp; the tail reads this far back and skips the rows it has seen by sequence number.
 */
const TAIL_MARGIN_MS = 120_000;
/** Rows read at once: ~1 ms of synchronous reading, then the event loop runs (renewals first). */
const TAIL_CHUNK_ROWS = 256;
/** How often the tail is looked at, by default. */
export const DEFAULT_AUDIT_WATCH_MS = 5_000;

/**
 * New rows, in sequence order. `reset`: the log's head went backwards (a store replaced or
 * restored): what a subscriber derived before may be wrong, derive again.
 */
export interface AuditBatch {
  rows: readonly AuditRecord[];
  reset: boolean;
}
export type AuditSubscriber = (batch: AuditBatch) => void | Promise<void>;

export interface AuditWatcherOptions {
  audit: Pick<AuditStore, 'head' | 'list'>;
  now: () => number;
  watchMs?: number;
  onError?: (err: unknown) => void;
  /**
   * The store's durability barrier (Stores.whenDurable: SQLite with durable commits; absent on
   * PostgreSQL, whose commits are durable when they return). Rows are delivered only once it
   * resolved after the head was read: a CRL or a pushed event must not announce a lock that a
   * power loss could still roll back (docs/store-contract.md "Durable commits on SQLite").
   */
  whenDurable?: () => Promise<void>;
}

export class AuditWatcher {
  readonly watchMs: number;
  readonly #o: AuditWatcherOptions;
  readonly #subscribers: AuditSubscriber[] = [];
  /** The newest row delivered (or the head when the tail started), and when it was looked at. */
  #seen: { seq: number; at: number } | undefined;
  #looking: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;

  constructor(o: AuditWatcherOptions) {
    this.#o = o;
    this.watchMs = o.watchMs ?? DEFAULT_AUDIT_WATCH_MS;
  }

  subscribe(fn: AuditSubscriber): void {
    this.#subscribers.push(fn);
  }

  /** Look at the tail now (after any running look) and deliver what is new. */
  poll(): Promise<void> {
    const next = this.#looking.then(
      () => this.#look(),
      () => this.#look(),
    );
    this.#looking = next.catch(() => undefined);
    return next;
  }

  async #look(): Promise<void> {
    const { audit, now } = this.#o;
    const seen = this.#seen;
    const head = await audit.head();
    const at = now();
    if (seen === undefined) {
      this.#seen = { seq: head?.seq ?? 0, at };
      return;
    }
    if (!head || head.seq === seen.seq) return;
    if (head.seq < seen.seq) {
      this.#seen = { seq: head.seq, at };
      await this.#deliver({ rows: [], reset: true });
      return;
    }
    // Rows up to the head just read were committed before it was read: a flush started now
    // makes them durable. Later rows wait for the next look (they are past `head`).
    await this.#o.whenDurable?.();
    // Only the rows after the last one seen, found by sequence number (issue #14): reading the
    // whole window again at every look cost ~5 µs per row, each row read once per look for two
    // minutes, in one synchronous read that held the event loop (hundreds of ms under load).
    // And in chunks, yielding to the event loop between them: at 1,500 renewals/s a look finds
    // ~7,500 new rows, ~35 ms of synchronous reading in one piece — a stall every look that
    // renewals queued behind (p99 at 80% of saturation).
    let after = seen.seq;
    for (let first = true; ; first = false) {
      const listed = await audit.list({ since: seen.at - TAIL_MARGIN_MS, afterSeq: after, limit: TAIL_CHUNK_ROWS });
      const rows = listed.filter((r) => r.seq > after && r.seq <= head.seq).sort((a, b) => a.seq - b.seq);
      const last = rows.at(-1);
      if (first && last === undefined) {
        // The rows were outside the window (a long pause): start again from the head.
        this.#seen = { seq: head.seq, at };
        await this.#deliver({ rows, reset: true });
        return;
      }
      if (last === undefined) break;
      after = last.seq;
      this.#seen = { seq: after, at };
      await this.#deliver({ rows, reset: false });
      if (listed.length < TAIL_CHUNK_ROWS) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  async #deliver(batch: AuditBatch): Promise<void> {
    for (const fn of this.#subscribers) {
      try {
        await fn(batch);
      } catch (err) {
        this.#o.onError?.(err);
      }
    }
  }

  /** Look every watchMs (a failed look is reported; the next tick tries again). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => {
      this.poll().catch((err: unknown) => this.#o.onError?.(err));
    }, this.watchMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#looking;
  }
}
