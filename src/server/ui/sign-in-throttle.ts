/**
 * Sign-in failures per source address (issue #18: brute force of the sign-in). Credentials are
 * 256-bit random tokens, so guessing is hopeless anyway; the throttle keeps a guesser from
 * turning the sign-in form into CPU load and a stream of audit rows. Only failures count: an
 * operator who signs in and out all day is never throttled.
 *
 * A source gets `burst` failures, refilled at one per `refillMs`; with none left every wrong
 * attempt is refused with the time until the next one. A right credential still signs in
 * (ui/actions.ts): the source may be a reverse proxy or a NAT that all operators share, and a
 * client failing on purpose would otherwise keep them out; with 256-bit random tokens the
 * throttle being an oracle for "this guess was right" gives a guesser nothing (review of issue
 * #16). Bounded map, LRU eviction, as server/rate-limit.ts.
 */
export interface ThrottleOptions {
  burst?: number;
  refillMs?: number;
  maxKeys?: number;
  now?: () => number;
}

interface Budget {
  left: number;
  at: number;
}

export class SignInThrottle {
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #budgets = new Map<string, Budget>();

  constructor(o: ThrottleOptions = {}) {
    this.#burst = o.burst ?? 5;
    this.#refillMs = o.refillMs ?? 60_000;
    this.#maxKeys = o.maxKeys ?? 10_000;
    this.#now = o.now ?? Date.now;
  }

  #current(source: string): Budget | undefined {
    const b = this.#budgets.get(source);
    if (!b) return undefined;
    const now = this.#now();
    const gained = Math.floor((now - b.at) / this.#refillMs);
    if (gained > 0) {
      b.left = Math.min(this.#burst, b.left + gained);
      b.at += gained * this.#refillMs;
    }
    if (b.left >= this.#burst) {
      this.#budgets.delete(source);
      return undefined;
    }
    return b;
  }

  /** Before checking a credential: 0 when the source may try, else the ms until it may. */
  retryAfterMs(source: string): number {
    const b = this.#current(source);
    if (!b || b.left > 0) return 0;
    return Math.max(1, b.at + this.#refillMs - this.#now());
  }

  /** After a wrong credential. */
  failed(source: string): void {
    let b = this.#current(source);
    if (!b) {
      if (this.#budgets.size >= this.#maxKeys) {
        const oldest = this.#budgets.keys().next();
        if (!oldest.done) this.#budgets.delete(oldest.value);
      }
      b = { left: this.#burst, at: this.#now() };
    }
    this.#budgets.delete(source);
    b.left = Math.max(0, b.left - 1);
    this.#budgets.set(source, b);
  }
}
