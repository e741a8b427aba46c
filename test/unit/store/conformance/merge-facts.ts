/**
 * Conformance: `instances.recordIssue` with `mergeFacts` (issue #16: a renewal's attestation
 * record, carrier and agent version ride on its one instance UPDATE). The merged facts and the
 * fleet view's attestation state must be exactly what `updateFacts` followed by a plain
 * `recordIssue` leaves, on its own and inside `withWriteTx`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores, TxStores } from '../../../../src/server/store/types.js';
import { MIN, T0, instance } from './fixtures.js';

const STORED = { a: 1, b: { c: 2 }, gone: 'x', z: 'keep', attestation: { at: T0, ok: true, via: 'join' } };

const issue = (generation: number, now: number) => ({
  generation,
  serial: `0${generation}`,
  notAfter: now + 60 * MIN,
  keyStorage: 'tpm' as const,
  exportable: false,
  now,
});

export function mergeFactsSuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  const attestationOk = async (id: string): Promise<boolean | null | undefined> =>
    (await s.fleet.page({ now: T0 + 5 * MIN, limit: 100 })).rows.find((r) => r.id === id)?.attestationOk;

  describe('instances.recordIssue with mergeFacts', () => {
    const variants = ['on its own', 'inside withWriteTx', 'inside withWriteTx that read the row first'] as const;
    for (const where of variants) {
      const run = (f: (t: TxStores) => Promise<void>): Promise<void> =>
        where === 'on its own'
          ? f(s)
          : s.withWriteTx(async (tx) => {
              // As a renewal does before it decides (the PostgreSQL backend then holds the row FOR UPDATE).
              if (where !== 'inside withWriteTx')
                for (const id of ['twin-u', 'twin-m', 'e-u', 'e-m']) await tx.instances.get(id);
              await f(tx);
            });

      it(`merges as updateFacts does, in the same update (${where})`, async () => {
        await s.instances.create(instance('twin-u', { facts: STORED }));
        await s.instances.create(instance('twin-m', { facts: STORED }));
        // An undefined value removes its key (canonical JSON drops it), nested objects are replaced whole;
        // text PostgreSQL's json functions would refuse (\u0000, a lone surrogate) is stored and merged again.
        const failed = { at: T0 + MIN, ok: false, via: 'renew', check: 'pcr_value', diff: [{ pcr: 7 }] };
        const patch = { b: { d: 3 }, e: 'é\u0000"\ud800', gone: undefined, attestation: failed, n: 0.1 + 0.2 };
        await run(async (t) => {
          await t.instances.updateFacts('twin-u', patch, T0 + MIN);
          await t.instances.recordIssue('twin-u', issue(1, T0 + MIN));
        });
        await run((t) => t.instances.recordIssue('twin-m', { ...issue(1, T0 + MIN), mergeFacts: patch }));
        const u = (await s.instances.get('twin-u'))!;
        const m = (await s.instances.get('twin-m'))!;
        const want = { a: 1, b: { d: 3 }, e: 'é\u0000"\ud800', z: 'keep', attestation: failed, n: 0.1 + 0.2 };
        expect(m.facts).toStrictEqual(want);
        expect(u.facts).toStrictEqual(want);
        expect(m).toMatchObject({
          generation: 1,
          currentSerial: '01',
          currentNotAfter: T0 + 61 * MIN,
          keyStorage: 'tpm',
          exportable: false,
          updatedAt: T0 + MIN,
          lastSeenAt: T0 + MIN,
        });
        expect(await attestationOk('twin-m')).toBe(false);
        expect(await attestationOk('twin-u')).toBe(false);

        // A passing record flips the fleet state back; a patch without one leaves it (and the record) alone.
        const good = { at: T0 + 2 * MIN, ok: true, via: 'renew' };
        await run((t) =>
          t.instances.recordIssue('twin-m', {
            ...issue(2, T0 + 2 * MIN),
            mergeFacts: { attestation: good, last_good_attestation_at: T0 + 2 * MIN },
          }),
        );
        expect(await attestationOk('twin-m')).toBe(true);
        await run((t) =>
          t.instances.recordIssue('twin-m', { ...issue(3, T0 + 3 * MIN), mergeFacts: { transport: 'mqtt' } }),
        );
        expect(await attestationOk('twin-m')).toBe(true);
        // Without mergeFacts the facts stay as they are.
        await run((t) => t.instances.recordIssue('twin-m', issue(4, T0 + 4 * MIN)));
        const after = (await s.instances.get('twin-m'))!;
        expect(after.facts).toStrictEqual({
          ...want,
          attestation: good,
          last_good_attestation_at: T0 + 2 * MIN,
          transport: 'mqtt',
        });
        expect(after).toMatchObject({ generation: 4, currentSerial: '04', updatedAt: T0 + 4 * MIN });
        expect(await attestationOk('twin-m')).toBe(true);
      });

      it(`an empty patch and empty stored facts merge to what updateFacts leaves (${where})`, async () => {
        await s.instances.create(instance('e-u', { facts: {} }));
        await s.instances.create(instance('e-m', { facts: {} }));
        await run((t) => t.instances.updateFacts('e-u', {}, T0 + MIN));
        await run((t) => t.instances.recordIssue('e-m', { ...issue(1, T0 + MIN), mergeFacts: {} }));
        expect((await s.instances.get('e-m'))!.facts).toStrictEqual((await s.instances.get('e-u'))!.facts);
        await run((t) => t.instances.recordIssue('e-m', { ...issue(2, T0 + 2 * MIN), mergeFacts: { k: [1, 'x'] } }));
        expect((await s.instances.get('e-m'))!.facts).toStrictEqual({ k: [1, 'x'] });
        expect(await attestationOk('e-m')).toBeNull();
      });
    }

    it('sees the facts written before it in the same transaction', async () => {
      await s.instances.create(instance('seq', { facts: { a: 1 } }));
      await s.withWriteTx(async (tx) => {
        await tx.instances.get('seq');
        await tx.instances.updateFacts('seq', { b: 2 }, T0 + MIN);
        await tx.instances.recordIssue('seq', { ...issue(1, T0 + MIN), mergeFacts: { c: 3 } });
        await tx.instances.recordIssue('seq', { ...issue(2, T0 + MIN), mergeFacts: { d: 4, a: undefined } });
        await tx.instances.updateFacts('seq', { e: 5 }, T0 + MIN);
        await tx.instances.recordIssue('seq', { ...issue(3, T0 + MIN), mergeFacts: { f: 6 } });
      });
      expect((await s.instances.get('seq'))!).toMatchObject({ generation: 3, facts: { b: 2, c: 3, d: 4, e: 5, f: 6 } });
      expect((await s.instances.get('seq'))!.facts).not.toHaveProperty('a');
    });

    it('rejects for an unknown instance, and inside withWriteTx fails the transaction', async () => {
      await expect(
        s.instances.recordIssue('nope', { ...issue(1, T0), mergeFacts: { transport: 'https' } }),
      ).rejects.toThrow(/no instance/);
      await expect(
        s.withWriteTx(async (tx) => {
          await tx.instances.create(instance('rolled-back'));
          await tx.instances.recordIssue('nope', { ...issue(1, T0), mergeFacts: { transport: 'https' } });
        }),
      ).rejects.toThrow(/no instance/);
      expect(await s.instances.get('rolled-back')).toBeUndefined();
    });
  });
}
