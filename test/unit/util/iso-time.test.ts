import { describe, expect, it } from 'vitest';
import { isoTime } from '../../../src/util/iso-time.js';

describe('isoTime', () => {
  it('is toISOString for every instant of years 0–9999 (edges and 20,000 random instants)', () => {
    const edges = [
      0,
      -1,
      Date.UTC(0, 0, 1) - 0,
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      Date.UTC(2000, 1, 29, 12, 0, 0, 7),
      Date.UTC(2026, 11, 5, 9, 5, 3, 40),
      Date.UTC(1969, 11, 31, 23, 59, 59, 999),
    ];
    const lo = Date.UTC(0, 0, 1);
    const hi = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    const random = Array.from({ length: 20_000 }, () => Math.floor(lo + Math.random() * (hi - lo)));
    for (const t of [...edges, ...random]) {
      expect(isoTime(t)).toBe(new Date(t).toISOString());
      expect(isoTime(new Date(t))).toBe(new Date(t).toISOString());
    }
  });

  it('defers to toISOString outside years 0–9999 and for an invalid date', () => {
    const far = Date.UTC(12000, 0, 1);
    expect(isoTime(far)).toBe(new Date(far).toISOString());
    expect(isoTime(Date.UTC(-5, 0, 1))).toBe(new Date(Date.UTC(-5, 0, 1)).toISOString());
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });
});

describe('the agent daemon formats times without toISOString', () => {
  it('agent.ts, attest-schedule.ts and credentials.ts (what a running daemon logs) use isoTime', async () => {
    const { readFileSync } = await import('node:fs');
    // The first toISOString() of a process pages in ~640 KB of ICU data (src/util/iso-time.ts).
    for (const f of ['agent.ts', 'attest-schedule.ts', 'credentials.ts']) {
      const src = readFileSync(new URL(`../../../src/agent/${f}`, import.meta.url), 'utf8');
      expect(src, f).not.toMatch(/\.toISOString\(|\.toJSON\(|toLocale/);
    }
  });
});
