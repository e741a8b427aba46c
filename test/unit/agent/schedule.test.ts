import { describe, expect, it } from 'vitest';
import { backoffDelay, renewAt, RETRY_BASE_MS, RETRY_CAP_MS, RETRY_FLOOR_MS } from '../../../src/agent/schedule.js';

/** A seeded PRNG (mulberry32) so the statistical tests are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const stats = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
};

const T0 = 1_700_000_000_000;
const HOUR = 3600_000;

describe('renewAt', () => {
  it('is half the lifetime ±10% at the jitter extremes', () => {
    expect(renewAt(T0, T0 + HOUR, 0.5, () => 0)).toBe(T0 + 0.45 * HOUR);
    expect(renewAt(T0, T0 + HOUR, 0.5, () => 0.5)).toBe(T0 + 0.5 * HOUR);
    expect(renewAt(T0, T0 + HOUR, 0.5, () => 0.999999)).toBeLessThanOrEqual(T0 + 0.55 * HOUR);
  });

  it('stays within ±10% of the half-life for many random draws, and spreads across the window', () => {
    const rand = seeded(1);
    const xs = Array.from({ length: 5000 }, () => renewAt(T0, T0 + 24 * HOUR, 0.5, rand) - T0);
    const s = stats(xs);
    expect(s.min).toBeGreaterThanOrEqual(0.45 * 24 * HOUR);
    expect(s.max).toBeLessThanOrEqual(0.55 * 24 * HOUR);
    // Uniform over the window: both outer tenths are populated, mean near the centre.
    expect(s.min).toBeLessThan(0.46 * 24 * HOUR);
    expect(s.max).toBeGreaterThan(0.54 * 24 * HOUR);
    expect(Math.abs(s.mean - 12 * HOUR)).toBeLessThan(0.01 * 24 * HOUR);
  });

  it('honours other fractions and the default Math.random', () => {
    for (let i = 0; i < 200; i++) {
      const t = renewAt(T0, T0 + HOUR, 0.8) - T0;
      expect(t).toBeGreaterThanOrEqual(0.72 * HOUR);
      expect(t).toBeLessThanOrEqual(0.88 * HOUR);
    }
  });

  it('a zero or negative lifetime renews at once (never in the past of issuedAt)', () => {
    expect(renewAt(T0, T0, 0.5, () => 0.3)).toBe(T0);
    expect(renewAt(T0, T0 - HOUR, 0.5, () => 0.3)).toBe(T0);
  });

  it('returns whole milliseconds', () => {
    expect(Number.isInteger(renewAt(T0, T0 + 12_345, 0.5, () => 0.123))).toBe(true);
  });
});

describe('backoffDelay', () => {
  it('is bounded below by the floor and above by min(cap, base·2^n)', () => {
    for (let n = 0; n < 40; n++) {
      const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** n);
      expect(backoffDelay(n, () => 0)).toBe(RETRY_FLOOR_MS);
      expect(backoffDelay(n, () => 0.9999999)).toBeLessThanOrEqual(ceiling);
      expect(backoffDelay(n, () => 0.9999999)).toBeGreaterThanOrEqual(Math.max(RETRY_FLOOR_MS, ceiling - 1));
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(n);
        expect(d).toBeGreaterThanOrEqual(RETRY_FLOOR_MS);
        expect(d).toBeLessThanOrEqual(Math.max(RETRY_FLOOR_MS, ceiling));
      }
    }
  });

  it('grows exponentially until the 5-minute cap and stays there for huge failure counts', () => {
    const top = (n: number) => backoffDelay(n, () => 0.9999999);
    expect([0, 1, 2, 3].map(top)).toEqual([1000, 2000, 4000, 8000]);
    expect(top(9)).toBe(RETRY_CAP_MS); // 512 s > 300 s
    for (const n of [30, 31, 1000, Number.MAX_SAFE_INTEGER]) expect(top(n)).toBe(RETRY_CAP_MS);
    expect(Number.isFinite(backoffDelay(1e9, () => 0.5))).toBe(true);
  });

  it('respects a custom cap, and the floor even with a cap below it', () => {
    expect(backoffDelay(20, () => 0.9999999, 10_000)).toBe(10_000);
    expect(backoffDelay(20, () => 0.01, 100)).toBe(RETRY_FLOOR_MS);
  });

  it('1000 agents that failed together do not retry together (first and later retries)', () => {
    const rand = seeded(42);
    for (const failures of [0, 1, 5, 12]) {
      const delays = Array.from({ length: 1000 }, () => backoffDelay(failures, rand));
      const s = stats(delays);
      expect(s.sd).toBeGreaterThan(0.2 * s.mean);
      expect(s.max - s.min).toBeGreaterThan(0.5 * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** failures));
      if (failures < 3) continue; // see the floor point mass below
      // No 5%-wide slice of the window holds more than 10% of the fleet.
      const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** failures);
      const buckets = new Array(20).fill(0);
      for (const d of delays) buckets[Math.min(19, Math.floor((d / ceiling) * 20))]++;
      expect(Math.max(...buckets)).toBeLessThanOrEqual(100);
    }
  });

  it('the first retry has no point mass at the floor: no delay is drawn by more than 1% of 1000 agents', () => {
    const rand = seeded(7);
    const counts = new Map<number, number>();
    for (let i = 0; i < 1000; i++) {
      const d = backoffDelay(0, rand);
      counts.set(d, (counts.get(d) ?? 0) + 1);
    }
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(10);
  });
});
