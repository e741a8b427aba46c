import { describe, expect, it } from 'vitest';
import type { AuditStore, AuditWalk } from '../../../src/server/store/types.js';
import { AuditChainCheck } from '../../../src/server/ui/audit-chain.js';

/** A chain of `rows` rows, 1 ms of (fake) time per verified row, broken at `brokenAt` if given. */
function fakeAudit(state: { rows: number; brokenAt?: number; clock: { t: number }; starts: number }): AuditStore {
  return {
    anchor: async () => undefined,
    head: async () => ({ seq: state.rows, hash: 'h' }),
    startWalk: async () => {
      state.starts++;
      return { nextSeq: 1, prevHash: 'g', rows: 0, done: false };
    },
    verifyStep: async (w: AuditWalk, max = 1000): Promise<AuditWalk> => {
      const end = Math.min(state.rows, w.nextSeq - 1 + max);
      for (let seq = w.nextSeq; seq <= end; seq++) {
        state.clock.t += 1;
        if (seq === state.brokenAt) return { ...w, nextSeq: seq, done: true, brokenAt: seq, reason: 'hash mismatch' };
      }
      return { nextSeq: end + 1, prevHash: 'p', rows: w.rows + (end - w.nextSeq + 1), done: end >= state.rows };
    },
  } as unknown as AuditStore;
}

describe('the audit page chain check', () => {
  it('walks for at most its budget, then goes on from where it stopped; new rows are walked, not the old again', async () => {
    const state = { rows: 5000, clock: { t: 0 }, starts: 0 };
    const check = new AuditChainCheck(fakeAudit(state), () => state.clock.t, 2500);
    const first = await check.run(false);
    expect(first.complete).toBe(false);
    expect(first.throughSeq).toBe(3000);
    const second = await check.run(false);
    expect(second).toMatchObject({ complete: true, throughSeq: 5000, rows: 5000 });
    state.rows = 5200;
    const third = await check.run(false);
    expect(third).toMatchObject({ complete: true, throughSeq: 5200, rows: 5200 });
    expect(state.starts).toBe(1);
    await check.run(true);
    expect(state.starts).toBe(2);
  });

  it('reports a broken chain with its seq and starts over on the next press', async () => {
    const state = { rows: 3000, brokenAt: 1234, clock: { t: 0 }, starts: 0 };
    const check = new AuditChainCheck(fakeAudit(state), () => state.clock.t);
    expect(await check.run(false)).toMatchObject({ brokenAt: 1234, reason: 'hash mismatch' });
    await check.run(false);
    expect(state.starts).toBe(2);
  });
});
