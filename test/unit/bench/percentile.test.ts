import { describe, expect, it } from 'vitest';
import { percentile, summarize } from '../../../bench/lib/percentile.js';

describe('percentile (nearest rank)', () => {
  const hundred = Float64Array.from({ length: 100 }, (_, i) => i + 1); // 1..100

  it('p99 of 100 samples is the 99th smallest, p50 the 50th, p100 the largest', () => {
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 100)).toBe(100);
  });

  it('never interpolates: every answer is a sample', () => {
    const s = [1, 10];
    expect(percentile(s, 50)).toBe(1);
    expect(percentile(s, 51)).toBe(10);
    expect(percentile(s, 0)).toBe(1);
  });

  it('a single slow request among 99 fast ones is p99 only when it is within the top 1%', () => {
    const s = [...Array.from({ length: 99 }, () => 1), 500];
    expect(percentile(s, 99)).toBe(1);
    expect(percentile(s, 99.5)).toBe(500);
  });

  it('is NaN for no samples and refuses a percentage outside 0..100', () => {
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], NaN)).toThrow(RangeError);
  });
});

describe('summarize', () => {
  it('merges unsorted chunks (one per worker) before ranking', () => {
    const s = summarize(Float64Array.from([5, 1, 3]), [4, 2], []);
    expect(s).toEqual({ n: 5, p50: 3, p90: 5, p99: 5, max: 5, mean: 3 });
  });

  it('reports NaN figures and n = 0 when nothing was measured', () => {
    const s = summarize();
    expect(s.n).toBe(0);
    expect(s.p99).toBeNaN();
    expect(s.mean).toBeNaN();
  });
});
