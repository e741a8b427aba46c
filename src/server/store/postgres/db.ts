/**
 * What every PostgreSQL store is built on: where its statements go. Outside a transaction that is
 * the pool (each statement autocommits on whichever connection is free); inside `withWriteTx` it
 * is the transaction's one connection, and only while the transaction is open.
 */
import type { ChangeTopic } from './change-feed.js';
import { isRetryableTxError, type Pool, type Sql } from './connection.js';
import type { CachedTopic, PolicyCache } from './policy-cache.js';

/** Runs of a transaction when PostgreSQL reports a serialization failure or deadlock (types.ts header). */
export const TX_ATTEMPTS = 5;

/** Run `once` again after 40001/40P01, at most TX_ATTEMPTS times, with a short random pause between. */
export async function withRetries<T>(once: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      if (attempt >= TX_ATTEMPTS || !isRetryableTxError(err)) throw err;
      // So the transactions that collided do not collide again.
      await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
    }
  }
}

export interface Db {
  /** The statement runner. Inside a transaction that has ended: throws TypeError (a caller bug). */
  readonly sql: Sql;
  /** True inside `withWriteTx`: reads that decide a write take their row or advisory locks. */
  readonly inTx: boolean;
  /**
   * Run a method of several statements atomically: inside `withWriteTx` it simply joins the
   * transaction (a failure aborts it, the contract's rule); outside, it is a transaction of its own.
   */
  atomic<T>(fn: (sql: Sql) => Promise<T>): Promise<T>;
  /**
   * Say that a statement wrote `topic` (it also sent its pg_notify: ./change-feed.ts): outside a
   * transaction it has committed, so this issuer's cache drops the topic now; inside, once the
   * transaction commits (./stores.ts), and until then the transaction's own reads of it skip the cache.
   */
  wrote(topic: ChangeTopic): void;
  /** Read through the issuer's policy cache (./policy-cache.ts) when there is one and this Db may use it. */
  cached<T>(topic: CachedTopic, key: string, load: () => Promise<T>): Promise<T>;
}

/** The pool as a `Db`: statements autocommit, `atomic` is its own BEGIN … COMMIT. */
export function poolDb(pool: Pool, cache?: PolicyCache): Db {
  return {
    sql: pool,
    inTx: false,
    atomic: <T>(fn: (sql: Sql) => Promise<T>) => withRetries(() => pool.begin((tx) => fn(tx)) as Promise<T>),
    wrote: (topic) => cache?.invalidate(topic),
    cached: (topic, key, load) => (cache ? cache.read(topic, key, load) : load()),
  };
}

/** One open transaction as a `Db`; `end()` makes every later use a TypeError. */
export class TxDb implements Db {
  readonly inTx = true;
  #open = true;
  /** The first error of a statement sent with `sendWithoutWaiting` (the transaction is then aborted). */
  deferredError: unknown = undefined;
  /** Topics this transaction wrote: dropped from the cache after COMMIT (./stores.ts). */
  readonly wroteTopics = new Set<ChangeTopic>();

  /** Until the first statement: `sql` hands that statement to `opening` (./transaction.ts sends BEGIN with it). */
  #opening: ((first: Query) => void) | undefined;
  #first: Sql | undefined;

  /**
   * `tx`: the transaction's connection. `opening`: when BEGIN has not been sent yet, called once
   * with the first statement made through `sql`, before anything else is sent (./transaction.ts).
   */
  constructor(
    private readonly tx: Sql,
    private readonly cache?: PolicyCache,
    opening?: (first: Query) => void,
  ) {
    this.#opening = opening;
    if (opening) this.#first = firstStatementHook(tx, (q) => this.#open1(q));
  }

  /** True once BEGIN is on its way (always, when the caller sent it itself). */
  get begun(): boolean {
    return this.#opening === undefined;
  }

  #open1(first: Query | undefined): void {
    const opening = this.#opening;
    if (!opening) return;
    if (!first) {
      // Nothing was sent; nothing may be, or it would run outside the transaction.
      this.end();
      throw new TypeError(
        'the first statement of a transaction must be sql`…` or sql.unsafe (a batch, notify, … would run outside it)',
      );
    }
    this.#opening = undefined;
    this.#first = undefined;
    opening(first);
  }

  wrote(topic: ChangeTopic): void {
    this.wroteTopics.add(topic);
  }

  #onEnd: Array<(committed: boolean, err: unknown) => void> = [];

  /** Call `cb` once the transaction has ended: committed, or not (with the error withWriteTx rejects with). */
  onEnd(cb: (committed: boolean, err: unknown) => void): void {
    this.#onEnd.push(cb);
  }

  /** The transaction's outcome, told by whoever ran it (./transaction.ts): runs the onEnd callbacks, once. */
  settle(committed: boolean, err?: unknown): void {
    const callbacks = this.#onEnd;
    this.#onEnd = [];
    for (const cb of callbacks) cb(committed, err);
  }

  cached<T>(topic: CachedTopic, key: string, load: () => Promise<T>): Promise<T> {
    // After its own write the transaction must read that write, which no cache holds yet.
    if (!this.cache || this.wroteTopics.has(topic)) return load();
    return this.cache.read(topic, key, load);
  }

  get sql(): Sql {
    if (!this.#open)
      throw new TypeError(
        'the transaction these stores belong to has already ended (use the stores withWriteTx passes only inside its fn)',
      );
    return this.#first ?? this.tx;
  }

  async atomic<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    return fn(this.sql);
  }

  /**
   * Send a write whose result nobody reads, without waiting for its round trip: it goes out now,
   * on this transaction's connection, and the next statement (at the latest the COMMIT) follows
   * it in the same network write. PostgreSQL runs them in order; if it fails, the transaction is
   * aborted, the COMMIT answers ROLLBACK and `withWriteTx` rejects with this error (stores.ts).
   */
  sendWithoutWaiting(query: { execute(): PromiseLike<unknown> }, mapError?: (err: unknown) => unknown): void {
    Promise.resolve(query.execute()).then(undefined, (err: unknown) => {
      // `mapError`: what the failure means to the caller (a statement that signals by SQLSTATE).
      this.deferredError ??= mapError ? mapError(err) : err;
    });
  }

  end(): void {
    this.#open = false;
  }
}

/** A statement made with the tagged template, not yet sent. */
export type Query = ReturnType<Sql>;

/** What `sql` has that sends statements of its own (and so cannot come first: see firstStatementHook). */
const SENDERS = new Set<PropertyKey>([
  'batch',
  'notify',
  'file',
  'begin',
  'savepoint',
  'reserve',
  'listen',
  'subscribe',
]);

/**
 * `sql`, except that the first statement made with it — a tagged template call or `sql.unsafe` —
 * is passed to `first` instead of being left to run by itself; every later call goes straight to
 * `sql`. Helpers that make no statement (an identifier `sql('name')`, `sql.json`, …) pass through.
 * Anything else that would send a statement first (`sql.batch`, `sql.notify`, …) is refused
 * (`first(undefined)`): it would run outside the transaction.
 */
function firstStatementHook(sql: Sql, first: (q: Query | undefined) => void): Sql {
  const isTemplate = (a: unknown): boolean => Array.isArray(a) && 'raw' in (a as object);
  return new Proxy(sql, {
    apply(target, thisArg, args: unknown[]) {
      const made = Reflect.apply(target, thisArg, args) as Query;
      if (isTemplate(args[0])) first(made);
      return made;
    },
    get(target, prop, receiver) {
      if (prop === 'unsafe')
        return (...args: Parameters<Sql['unsafe']>) => {
          const q = target.unsafe(...args) as unknown as Query;
          first(q);
          return q;
        };
      if (SENDERS.has(prop)) first(undefined);
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}
