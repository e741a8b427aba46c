/**
 * "Renewal overdue" in the fleet view (src/server/store/fleet-types.ts) against the agent's real
 * schedule (src/agent/schedule.ts renewAt): a machine renewing on time is never shown overdue,
 * whatever its jitter — the walk of the docs on 2026-12-06 saw healthy machines flip to overdue
 * for minutes every cycle when the rule was the half-life of notBefore..notAfter.
 */
import { describe, expect, it } from 'vitest';
import { renewAt } from '../../../src/agent/schedule.js';
import { BACKDATE_MS } from '../../../src/server/ops/issue.js';
import { statesOf, type FleetDbRow } from '../../../src/server/store/fleet-query.js';
import { ISSUE_BACKDATE_MS } from '../../../src/server/store/fleet-types.js';

const row = (notBefore: number, notAfter: number): FleetDbRow =>
  ({
    id: 'i',
    locked: 0,
    current_not_before: notBefore,
    current_not_after: notAfter,
    attestation_ok: null,
    facts: '{}',
  }) as unknown as FleetDbRow;

describe('fleet view: renewal overdue', () => {
  it('counts from the issue time the issuer dates certificates back from', () => {
    expect(ISSUE_BACKDATE_MS).toBe(BACKDATE_MS);
  });

  for (const ttlMs of [150_000, 3600_000, 24 * 3600_000])
    it(`an agent renewing on schedule is never overdue (ttl ${ttlMs / 1000} s, jitter at both ends)`, () => {
      const issued = 1_800_000_000_000;
      const notBefore = issued - BACKDATE_MS;
      const notAfter = issued + ttlMs;
      for (const r of [0, 0.5, 1]) {
        const due = renewAt(issued, notAfter, 0.5, () => r);
        expect(statesOf(row(notBefore, notAfter), due)).toEqual(['healthy']);
      }
      // Two thirds of the lifetime from the issue: overdue (inclusive); a moment before: not.
      const twoThirds = issued + (2 * ttlMs) / 3;
      expect(statesOf(row(notBefore, notAfter), Math.ceil(twoThirds))).toEqual(['renewal_overdue']);
      expect(statesOf(row(notBefore, notAfter), Math.floor(twoThirds) - 1)).toEqual(['healthy']);
    });
});
