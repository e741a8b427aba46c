/**
 * Latency summaries for the benches: nearest-rank percentiles (the smallest sample with at least
 * p% of the samples at or below it), so p99 of 100 samples is the 99th smallest, never an
 * interpolated value no request actually saw.
 */

/** Nearest-rank percentile of ascending `sorted`; NaN when empty. `p` in [0, 100]. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface LatencySummary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Sort a copy of the samples (any number of chunks, e.g. one per worker) and summarise them. */
export function summarize(...chunks: ArrayLike<number>[]): LatencySummary {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const all = new Float64Array(n);
  let o = 0;
  for (const c of chunks) {
    all.set(c as ArrayLike<number>, o);
    o += c.length;
  }
  all.sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += all[i]!;
  return {
    n,
    p50: percentile(all, 50),
    p90: percentile(all, 90),
    p99: percentile(all, 99),
    max: n ? all[n - 1]! : NaN,
    mean: n ? sum / n : NaN,
  };
}
