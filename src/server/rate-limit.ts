/**
 * Per-source rate limiting: one token bucket per key (a remote address today; the MQTT
 * responder can key on a client id or the broker-reported address later), in a bounded map.
 *
 * A bucket holds at most `burst` tokens and refills at `ratePerS`; a request takes one token
 * or is refused with the time until the next token exists (RFC 6585 §4: 429 + Retry-After).
 *
 * The map never grows past `maxKeys` (a spoofing-free TCP source still has 2^128 IPv6
 * addresses to rotate through): on insert into a full map the least recently used bucket is
 * evicted (Map iteration order is insertion order; a hit re-inserts its key). Eviction hands a
 * fresh, full bucket to a source that comes back — the bound on memory is worth more than that
 * bucket; the per-source connection cap (transport/https/server.ts) still bounds what one
 * address can hold open at once.
 */

export interface RateLimitOptions {
  /** Tokens added per second (sustained requests per second per key). 0 disables the limiter. */
  ratePerS: number;
  /** Bucket size: the requests a key may make in a burst. */
  burst: number;
  /** Most keys kept at once (default 10,000, ~1 MB). */
  maxKeys?: number;
  /** Clock (ms), for tests. */
  now?: () => number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(private readonly opts: RateLimitOptions) {
    if (!(opts.ratePerS >= 0) || !(opts.burst >= 1) || !Number.isFinite(opts.ratePerS))
      throw new TypeError('RateLimiter: ratePerS >= 0 and burst >= 1 are required');
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.opts.ratePerS > 0;
  }

  /** Keys currently tracked (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  /** Take one token for `key`, or say how long until one is available. */
  take(key: string): RateDecision {
    if (!this.enabled) return { ok: true };
    const now = this.now();
    const { ratePerS, burst } = this.opts;
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key); // re-inserted below: most recently used goes last
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * ratePerS);
      b.at = now;
    } else {
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next();
        if (!oldest.done) this.buckets.delete(oldest.value);
      }
      b = { tokens: burst, at: now };
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil(((1 - b.tokens) / ratePerS) * 1000)) };
  }
}
