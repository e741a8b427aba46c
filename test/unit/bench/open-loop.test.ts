import { describe, expect, it } from 'vitest';
import { arrivalTimes, runOpenLoop, seededRandom } from '../../../bench/lib/open-loop.js';

describe('arrivalTimes', () => {
  it('even: rate per second, exactly 1000/rate ms apart, inside [start, start + duration)', () => {
    const a = arrivalTimes({ rate: 200, kind: 'even', startMs: 1000, durationMs: 1000 });
    expect(a.length).toBe(200);
    expect(a[0]).toBe(1000);
    for (let i = 1; i < a.length; i++) expect(a[i]! - a[i - 1]!).toBeCloseTo(5, 9);
    expect(a[a.length - 1]!).toBeLessThan(2000);
  });

  it('poisson: the count is close to rate × duration and the gaps are exponential (mean ≈ sd)', () => {
    const a = arrivalTimes({ rate: 1000, kind: 'poisson', startMs: 0, durationMs: 20_000, random: seededRandom(7) });
    // 20,000 expected; a Poisson count has sd √20000 ≈ 141, so ±3% is > 4 sd.
    expect(a.length).toBeGreaterThan(19_400);
    expect(a.length).toBeLessThan(20_600);
    const gaps = Array.from(a.subarray(1), (t, i) => t - a[i]!);
    const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length);
    expect(mean).toBeCloseTo(1, 1);
    expect(sd / mean).toBeGreaterThan(0.95); // evenly spaced arrivals would have sd 0
    expect(sd / mean).toBeLessThan(1.05);
    expect(gaps.every((g) => g >= 0)).toBe(true); // ascending
    expect(a[a.length - 1]!).toBeLessThan(20_000);
  });

  it('a seed replays the same schedule; another seed gives another one', () => {
    const p = { rate: 50, kind: 'poisson' as const, startMs: 0, durationMs: 1000 };
    expect(arrivalTimes({ ...p, random: seededRandom(3) })).toEqual(arrivalTimes({ ...p, random: seededRandom(3) }));
    expect(arrivalTimes({ ...p, random: seededRandom(3) })).not.toEqual(
      arrivalTimes({ ...p, random: seededRandom(4) }),
    );
  });

  it('refuses a rate that is not positive', () => {
    expect(() => arrivalTimes({ rate: 0, kind: 'even', startMs: 0, durationMs: 1 })).toThrow(RangeError);
    expect(() => arrivalTimes({ rate: -1, kind: 'poisson', startMs: 0, durationMs: 1 })).toThrow(RangeError);
  });
});

describe('runOpenLoop', () => {
  it('sends every arrival once, in order, on time while clients are free', async () => {
    const t0 = performance.now() + 20;
    const arrivals = arrivalTimes({ rate: 500, kind: 'even', startMs: t0, durationMs: 100 });
    const sentAt: number[] = [];
    const scheduled: number[] = [];
    const r = await runOpenLoop({
      arrivals,
      clients: Array.from({ length: arrivals.length }, (_, i) => i), // never short of a free client
      clock: () => performance.now(),
      send: async (_c, at) => {
        scheduled.push(at);
        sentAt.push(performance.now());
      },
    });
    expect(scheduled).toEqual(Array.from(arrivals));
    // Never early: an open loop does not send before the schedule.
    sentAt.forEach((t, i) => expect(t).toBeGreaterThanOrEqual(arrivals[i]!));
    expect(r.waitedForClient).toBe(0);
    expect(r.lagMs.length).toBe(arrivals.length);
  });

  it('does not slow down with the server: arrivals queue for a busy client and their latency counts from the schedule', async () => {
    const t0 = performance.now() + 10;
    // 10 arrivals 1 ms apart, one client, each request takes 20 ms: a closed loop would send
    // them 20 ms apart and report 20 ms each; the open loop reports the growing queue.
    const arrivals = arrivalTimes({ rate: 1000, kind: 'even', startMs: t0, durationMs: 10 });
    const latency: number[] = [];
    const inFlight = { now: 0, max: 0 };
    const r = await runOpenLoop({
      arrivals,
      clients: ['only'],
      clock: () => performance.now(),
      send: async (_c, at) => {
        inFlight.max = Math.max(inFlight.max, ++inFlight.now);
        await new Promise((res) => setTimeout(res, 20));
        inFlight.now--;
        latency.push(performance.now() - at);
      },
    });
    expect(inFlight.max).toBe(1); // a client runs one request at a time
    expect(r.waitedForClient).toBe(9);
    expect(latency.length).toBe(10);
    // The last arrival waited for the nine before it: ≥ 10 × 20 ms − its 9 ms offset.
    expect(latency[9]!).toBeGreaterThanOrEqual(10 * 20 - 9 - 2);
    for (let i = 1; i < 10; i++) expect(latency[i]!).toBeGreaterThan(latency[i - 1]!);
  });

  it('resolves at once for an empty schedule and refuses to run without clients', async () => {
    await expect(
      runOpenLoop({ arrivals: new Float64Array(0), clients: [1], clock: () => 0, send: async () => undefined }),
    ).resolves.toMatchObject({ waitedForClient: 0 });
    expect(() =>
      runOpenLoop({ arrivals: new Float64Array(1), clients: [], clock: () => 0, send: async () => undefined }),
    ).toThrow(RangeError);
  });
});
