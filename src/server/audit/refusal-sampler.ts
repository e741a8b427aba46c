/**
 * Sampling of unauthenticated refusals (issue #11 item 4). Anyone who reaches the port can
 * make the issuer refuse: one audit row and one log line per garbage request let a client
 * grow both without bound (+43 MB in 10 s from four connections). Refusals where nobody
 * authenticated are counted per (source, op, code) in memory; the first few of each key per
 * interval are still recorded one by one (a single probe stays as visible as before), the rest
 * become one `refusal_summary` row per key when the interval ends: count, first and last time,
 * one sample message. Refusals of authenticated callers never come here.
 *
 * Memory and rows per interval are bounded whatever the sources: at most `maxKeys` keys (later
 * sources fold into source "other"), `perKeyRows` single rows per key and `maxRows` in all.
 * The owner (IssuerContext) calls `flush()` on a timer and at shutdown; `admit()` also rolls an
 * interval that has ended, so a test clock or a quiet timer loses nothing.
 */

export interface RefusalKey {
  /** Where it came from: an IP address (IPv6 by /64), "mqtt", or "other" past the key cap. */
  source: string;
  op: string;
  code: string;
}

export interface RefusalSummary extends RefusalKey {
  /** Refusals not recorded one by one in this interval. */
  count: number;
  /** Refusals recorded one by one for this key in this interval. */
  recorded: number;
  firstAt: number;
  lastAt: number;
  sample: string;
  intervalMs: number;
}

export interface RefusalSamplerOptions {
  intervalMs?: number;
  perKeyRows?: number;
  maxRows?: number;
  maxKeys?: number;
}

export const DEFAULT_SAMPLER: Required<RefusalSamplerOptions> = {
  intervalMs: 60_000,
  perKeyRows: 20,
  maxRows: 200,
  maxKeys: 256,
};

type Bucket = RefusalSummary;

export class RefusalSampler {
  readonly opts: Required<RefusalSamplerOptions>;
  private buckets = new Map<string, Bucket>();
  private rows = 0;
  private windowStart: number | undefined;

  constructor(opts: RefusalSamplerOptions = {}) {
    this.opts = { ...DEFAULT_SAMPLER, ...opts };
  }

  /**
   * Count one refusal. `record` says whether to write it as its own row; `due` holds the
   * summaries of an interval that ended before `now`, for the caller to write first.
   */
  admit(key: RefusalKey, message: string, now: number): { record: boolean; due: RefusalSummary[] } {
    const due = this.windowStart !== undefined && now - this.windowStart >= this.opts.intervalMs ? this.flush() : [];
    this.windowStart ??= now;
    let k = keyString(key);
    let b = this.buckets.get(k);
    if (!b && this.buckets.size >= this.opts.maxKeys) {
      key = { ...key, source: 'other' };
      k = keyString(key);
      b = this.buckets.get(k);
    }
    if (!b) {
      b = {
        ...key,
        count: 0,
        recorded: 0,
        firstAt: now,
        lastAt: now,
        sample: message,
        intervalMs: this.opts.intervalMs,
      };
      this.buckets.set(k, b);
    }
    b.lastAt = now;
    const record = b.recorded < this.opts.perKeyRows && this.rows < this.opts.maxRows;
    if (record) {
      b.recorded++;
      this.rows++;
    } else {
      if (b.count === 0) b.sample = message;
      b.count++;
    }
    return { record, due };
  }

  /** End the interval: the summaries of keys with refusals that were not recorded one by one. */
  flush(): RefusalSummary[] {
    const out = [...this.buckets.values()].filter((b) => b.count > 0);
    this.buckets = new Map();
    this.rows = 0;
    this.windowStart = undefined;
    return out;
  }

  /** Keys held right now (for tests and the memory bound). */
  get size(): number {
    return this.buckets.size;
  }
}

function keyString(k: RefusalKey): string {
  return `${k.source}\u0000${k.op}\u0000${k.code}`;
}

/**
 * The source a refusal is counted under. An MQTT "remote" is the response topic the client
 * chose, so it says nothing about who sent it: all MQTT refusals share one source. IPv6
 * addresses count by /64, the block one host typically gets.
 */
export function refusalSource(remote: string | null | undefined): string {
  if (!remote) return 'unknown';
  if (remote.startsWith('mqtt:')) return 'mqtt';
  const v4mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(remote);
  if (v4mapped) return v4mapped[1]!;
  if (remote.includes(':')) return `${ipv6Prefix64(remote)}::/64`;
  return remote.slice(0, 64);
}

function ipv6Prefix64(addr: string): string {
  const [head = '', tail = ''] = addr.split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = addr.includes('::')
    ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t]
    : h;
  return groups
    .slice(0, 4)
    .map((g) => (g || '0').toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':');
}
