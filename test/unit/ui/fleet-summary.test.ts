import { describe, expect, it } from 'vitest';
import type { FleetStore } from '../../../src/server/store/fleet-types.js';
import { FleetSummary } from '../../../src/server/ui/fleet-summary.js';

function fakeFleet() {
  const calls = { counts: 0, activity: 0, ages: 0 };
  let total = 0;
  const fleet = {
    counts: async () => {
      calls.counts++;
      total++;
      return { total, healthy: total, locked: 0, expired: 0, renewal_overdue: 0, attestation_failed: 0 };
    },
    activity: async () => {
      calls.activity++;
      return [];
    },
    certificateAges: async () => {
      calls.ages++;
      return [1, 2];
    },
  } as unknown as FleetStore;
  return { fleet, calls };
}

describe('fleet summary (counts and charts kept briefly)', () => {
  it('keeps counts for their TTL, shares one query between concurrent pages, and counts again after a change', async () => {
    const c = { t: 0 };
    const { fleet, calls } = fakeFleet();
    const s = new FleetSummary(
      () => fleet,
      () => c.t,
      { countsMs: 5000, chartsMs: 30_000 },
    );
    const [a, b] = await Promise.all([s.counts(), s.counts()]);
    expect(a.total).toBe(1);
    expect(b.total).toBe(1);
    expect(calls.counts).toBe(1);
    c.t += 4999;
    expect((await s.counts()).total).toBe(1);
    c.t += 1;
    expect((await s.counts()).total).toBe(2);
    s.invalidateCounts();
    expect((await s.counts()).total).toBe(3);
  });

  it('keeps the charts 30 s and fills every minute of the hour', async () => {
    const c = { t: 1_800_000_000_000 };
    const { fleet, calls } = fakeFleet();
    const s = new FleetSummary(
      () => fleet,
      () => c.t,
    );
    const ch = await s.charts();
    expect(ch.activity).toHaveLength(60);
    expect(ch.ages).toEqual([1, 2]);
    c.t += 29_999;
    await s.charts();
    expect(calls.activity).toBe(1);
    c.t += 1;
    await s.charts();
    expect(calls.activity).toBe(2);
  });

  it('does not keep a failed query', async () => {
    let fail = true;
    const fleet = {
      counts: async () => {
        if (fail) throw new Error('store down');
        return { total: 7 };
      },
    } as unknown as FleetStore;
    const s = new FleetSummary(
      () => fleet,
      () => 0,
    );
    await expect(s.counts()).rejects.toThrow('store down');
    fail = false;
    expect((await s.counts()).total).toBe(7);
  });
});
