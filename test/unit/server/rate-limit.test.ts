/** server/rate-limit.ts: token bucket per key, bounded map (issue #11 item 8). */
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../src/server/rate-limit.js';

describe('RateLimiter', () => {
  it('allows a burst, then refuses with the time until the next token, and refills', () => {
    let now = 0;
    const rl = new RateLimiter({ ratePerS: 2, burst: 3, now: () => now });
    expect([rl.take('a'), rl.take('a'), rl.take('a')].every((d) => d.ok)).toBe(true);
    expect(rl.take('a')).toEqual({ ok: false, retryAfterMs: 500 });
    now += 250;
    expect(rl.take('a')).toEqual({ ok: false, retryAfterMs: 250 });
    now += 250;
    expect(rl.take('a').ok).toBe(true);
    expect(rl.take('b').ok).toBe(true); // keys are independent
    now += 60_000;
    expect([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a')].map((d) => d.ok)).toEqual([
      true,
      true,
      true,
      false,
    ]); // capped at burst
  });

  it('keeps at most maxKeys buckets, evicting the least recently used', () => {
    const rl = new RateLimiter({ ratePerS: 1, burst: 1, maxKeys: 3, now: () => 0 });
    for (const k of ['a', 'b', 'c']) rl.take(k);
    expect(rl.take('a').ok).toBe(false); // a is now most recent
    rl.take('d'); // evicts b
    expect(rl.size).toBe(3);
    expect(rl.take('a').ok).toBe(false);
    expect(rl.take('b').ok).toBe(true); // b was forgotten: a fresh bucket (evicts c)
    for (let i = 0; i < 10_000; i++) rl.take(`k${i}`);
    expect(rl.size).toBe(3);
  });

  it('ratePerS 0 disables it', () => {
    const rl = new RateLimiter({ ratePerS: 0, burst: 1 });
    for (let i = 0; i < 100; i++) expect(rl.take('a').ok).toBe(true);
    expect(rl.size).toBe(0);
  });
});
