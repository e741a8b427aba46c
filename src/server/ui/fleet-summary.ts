/**
 * The fleet page's whole-fleet figures, shared by every session and kept briefly (issue #18, the
 * 100,000-instance budget): counts per state and the charts (activity per minute from the audit
 * log, certificate ages) each scan the whole fleet or an hour of audit rows — at 100k instances
 * the charts alone cost ~70 ms of CPU (bench/fleet-ui.ts), more than the filtered page itself.
 *
 * - Charts are kept `chartsTtlMs` (default 30 s; the page says as of when): a per-minute chart
 *   that is up to half a minute behind says the same thing.
 * - Counts are kept `countsTtlMs` (default 5 s) and dropped at once when this view locks or
 *   unlocks something, so an operator sees their own change.
 * - Single flight: concurrent page loads wait for one query instead of starting one each.
 */
import type { FleetBucket, FleetState, FleetStore } from '../store/fleet-types.js';
import { activityWindow, ACTIVITY_BUCKET_MS, AGE_EDGES_MS, fillBuckets } from './chart-data.js';

export type FleetCounts = Record<FleetState, number> & { total: number };

export interface FleetCharts {
  activity: FleetBucket[];
  ages: number[];
  /** When they were computed. */
  at: number;
}

interface Kept<T> {
  value: Promise<T>;
  at: number;
}

export class FleetSummary {
  #counts: Kept<FleetCounts> | undefined;
  #charts: Kept<FleetCharts> | undefined;

  constructor(
    private readonly fleet: () => FleetStore,
    private readonly now: () => number,
    private readonly ttl: { countsMs: number; chartsMs: number } = { countsMs: 5000, chartsMs: 30_000 },
  ) {}

  counts(): Promise<FleetCounts> {
    this.#counts = this.#fresh(this.#counts, this.ttl.countsMs, (now) => this.fleet().counts(now));
    return this.#counts.value;
  }

  charts(): Promise<FleetCharts> {
    this.#charts = this.#fresh(this.#charts, this.ttl.chartsMs, async (now) => {
      const win = activityWindow(now);
      const [activity, ages] = await Promise.all([
        this.fleet().activity(win.from, win.to, ACTIVITY_BUCKET_MS),
        this.fleet().certificateAges(now, AGE_EDGES_MS),
      ]);
      return { activity: fillBuckets(win.from, win.to, ACTIVITY_BUCKET_MS, activity), ages, at: now };
    });
    return this.#charts.value;
  }

  /** After a change made through the view (lock, unlock): the next page counts again. */
  invalidateCounts(): void {
    this.#counts = undefined;
  }

  #fresh<T>(kept: Kept<T> | undefined, ttlMs: number, load: (now: number) => Promise<T>): Kept<T> {
    const now = this.now();
    if (kept && now - kept.at < ttlMs) return kept;
    const value = load(now);
    const next = { value, at: now };
    // A failed query is not kept: the next page asks again.
    value.catch(() => {
      if (this.#counts === (next as unknown)) this.#counts = undefined;
      if (this.#charts === (next as unknown)) this.#charts = undefined;
    });
    return next;
  }
}
