/** What the fleet page's charts ask of the store: the last hour per minute, and certificate ages in bins a 1-24 h TTL fleet spreads over. */
import type { FleetBucket } from '../store/fleet-types.js';
import { duration } from './format.js';

export const ACTIVITY_BUCKET_MS = 60_000;
export const ACTIVITY_BUCKETS = 60;

/** [from, to) of the activity chart: the last ACTIVITY_BUCKETS whole minutes, the current one included. */
export function activityWindow(now: number): { from: number; to: number } {
  const to = Math.floor(now / ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS + ACTIVITY_BUCKET_MS;
  return { from: to - ACTIVITY_BUCKETS * ACTIVITY_BUCKET_MS, to };
}

/** Every bucket of the window, empty ones included (a store may leave them out). */
export function fillBuckets(from: number, to: number, bucketMs: number, got: readonly FleetBucket[]): FleetBucket[] {
  const byStart = new Map(got.map((b) => [b.start, b]));
  const out: FleetBucket[] = [];
  for (let t = from; t < to; t += bucketMs)
    out.push(byStart.get(t) ?? { start: t, renewals: 0, refusals: 0, attestationFailures: 0 });
  return out;
}

export const AGE_EDGES_MS: readonly number[] = [5, 15, 30, 60, 120, 360, 720].map((m) => m * 60_000);

/** The histogram's bins (below the first edge, between edges, at or above the last): a short label and the range. */
export function ageBins(edges: readonly number[], bins: number): Array<{ label: string; range: string }> {
  const out: Array<{ label: string; range: string }> = [];
  for (let i = 0; i < bins; i++) {
    if (bins !== edges.length + 1) out.push({ label: `${i + 1}`, range: `bin ${i + 1}` });
    else if (i === 0) out.push({ label: `<${duration(edges[0]!)}`, range: `younger than ${duration(edges[0]!)}` });
    else if (i === edges.length)
      out.push({ label: `${duration(edges[i - 1]!)}+`, range: `${duration(edges[i - 1]!)} or older` });
    else out.push({ label: duration(edges[i - 1]!), range: `${duration(edges[i - 1]!)} to ${duration(edges[i]!)}` });
  }
  return out;
}
