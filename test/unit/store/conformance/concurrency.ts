/**
 * Conformance under concurrency: what the issuer relies on when many requests are in flight at
 * once (src/server/store/types.ts header). Each transaction yields between its read and its
 * write, so on a backend that runs transactions side by side they really overlap.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { MIN, T0, cert, gate, instance, yieldTurn } from './fixtures.js';

const N = 20;
const times = <T>(n: number, f: (i: number) => Promise<T>): Promise<T[]> =>
  Promise.all(Array.from({ length: n }, (_, i) => f(i)));

export function concurrencySuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('concurrency', () => {
    it('a read outside a transaction never sees that transaction before it commits', async () => {
      const wrote = gate();
      const release = gate();
      const tx = s.withWriteTx(async (t) => {
        await t.instances.create(instance('i1'));
        await t.audit.append({ action: 'join', outcome: 'ok' }, T0);
        wrote.open();
        await release.opened;
        throw new Error('rolled back');
      });
      await wrote.opened;
      // Started while the transaction holds uncommitted rows that will be rolled back.
      const reads = Promise.all([s.instances.get('i1'), s.instances.list(), s.audit.head()]);
      release.open();
      await expect(tx).rejects.toThrow('rolled back');
      expect(await reads).toEqual([undefined, [], undefined]);
    });

    it('a write outside a transaction is its own: it survives another transaction rolling back', async () => {
      const wrote = gate();
      const release = gate();
      const tx = s.withWriteTx(async (t) => {
        await t.instances.create(instance('inside'));
        wrote.open();
        await release.opened;
        throw new Error('rolled back');
      });
      await wrote.opened;
      const single = Promise.all([
        s.instances.create(instance('outside')),
        s.audit.append({ action: 'lock', outcome: 'ok' }, T0),
      ]);
      release.open();
      await expect(tx).rejects.toThrow('rolled back');
      await single;
      expect((await s.instances.list()).map((i) => i.id)).toEqual(['outside']);
      expect(await s.audit.verify()).toEqual({ ok: true, rows: 1 });
    });

    // Issue #14: a backend may commit concurrent transactions together (SQLite's group commit,
    // sqlite/async.ts); each must still commit or roll back as if it were alone.
    it(`of ${N} concurrent transactions, the ones that throw leave nothing and the others commit`, async () => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          s.withWriteTx(async (t) => {
            await t.instances.create(instance(`i${i}`));
            await yieldTurn();
            await t.audit.append({ action: 'join', outcome: 'ok', instanceId: `i${i}` }, T0 + i);
            if (i % 3 === 1) throw new Error(`boom ${i}`);
            await t.certificates.insert(cert(`c${i}`, `i${i}`));
            return i;
          }),
        ),
      );
      const kept = Array.from({ length: N }, (_, i) => i).filter((i) => i % 3 !== 1);
      outcomes.forEach((o, i) =>
        expect(o).toEqual(
          i % 3 === 1 ? { status: 'rejected', reason: new Error(`boom ${i}`) } : { status: 'fulfilled', value: i },
        ),
      );
      expect((await s.instances.list()).map((x) => x.id).sort()).toEqual(kept.map((i) => `i${i}`).sort());
      for (const i of kept) expect((await s.certificates.get(`c${i}`))?.instanceId).toBe(`i${i}`);
      expect(await s.audit.verify()).toEqual({ ok: true, rows: kept.length });
    });

    it(`of ${N} concurrent transactions, one that fails at commit (a missing reference) fails alone`, async () => {
      const outcomes = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          s.withWriteTx(async (t) => {
            if (i === 7) {
              await t.certificates.insert(cert('dead', 'ghost'));
              return i;
            }
            await t.instances.create(instance(`i${i}`));
            await yieldTurn();
            await t.certificates.insert(cert(`c${i}`, `i${i}`));
            return i;
          }),
        ),
      );
      expect(outcomes[7]!.status).toBe('rejected');
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(N - 1);
      expect(await s.certificates.get('dead')).toBeUndefined();
      expect((await s.instances.list()).length).toBe(N - 1);
      for (let i = 0; i < N; i++) if (i !== 7) expect((await s.certificates.get(`c${i}`))?.instanceId).toBe(`i${i}`);
    });

    it('each of many concurrent transactions is visible outside by the time its withWriteTx resolves', async () => {
      const seen = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          s
            .withWriteTx(async (t) => {
              await t.instances.create(instance(`v${i}`));
            })
            .then(() => s.instances.get(`v${i}`)),
        ),
      );
      expect(seen.map((x) => x?.id)).toEqual(Array.from({ length: N }, (_, i) => `v${i}`));
    });

    it('a read outside sees a transaction whole once withWriteTx resolved', async () => {
      await s.withWriteTx(async (t) => {
        await t.instances.create(instance('i1'));
        await yieldTurn();
        await t.certificates.insert(cert('01', 'i1'));
      });
      expect((await s.instances.get('i1'))?.id).toBe('i1');
      expect((await s.certificates.get('01'))?.instanceId).toBe('i1');
    });

    it(`of ${N} concurrent transactions consuming one join token exactly one wins`, async () => {
      await s.tokens.create({ hash: 'h', bot: 'edge', createdAt: T0, expiresAt: T0 + 15 * MIN });
      const outcomes = await times(N, (i) =>
        s.withWriteTx(async (tx) => {
          const seen = await tx.tokens.get('h');
          await yieldTurn();
          if (seen?.usedAt !== null) return 'early refusal';
          const r = await tx.tokens.consume('h', T0 + MIN, `inst-${i}`);
          if (!r.ok) return r.reason;
          await tx.instances.create(instance(`inst-${i}`));
          return 'ok';
        }),
      );
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
      expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 'token_reused' || o === 'early refusal')).toBe(true);
      expect(await s.instances.list()).toHaveLength(1);
      expect((await s.tokens.get('h'))?.usedBy).toBe((await s.instances.list())[0]!.id);
    });

    it(`of ${N} concurrent consumes of one token outside a transaction exactly one wins`, async () => {
      await s.tokens.create({ hash: 'h', bot: 'edge', createdAt: T0, expiresAt: T0 + 15 * MIN });
      const r = await times(N, (i) => s.tokens.consume('h', T0 + MIN, `inst-${i}`));
      expect(r.filter((x) => x.ok)).toHaveLength(1);
      expect(r.filter((x) => !x.ok && x.reason === 'token_reused')).toHaveLength(N - 1);
    });

    it(`of ${N} concurrent answers to one challenge exactly one wins, in or out of a transaction`, async () => {
      const ch = (id: string) => ({
        id,
        method: 'tpm',
        requestId: 'r',
        spkiHash: 'sha256:00',
        nonce: Buffer.alloc(32, 7),
        state: {},
        createdAt: T0,
        expiresAt: T0 + MIN,
      });
      await s.challenges.create(ch('c1'));
      await s.challenges.create(ch('c2'));
      const outside = await times(N, () => s.challenges.consume('c1', T0 + 1));
      expect(outside.filter((x) => x.ok)).toHaveLength(1);
      expect(outside.filter((x) => !x.ok && x.reason === 'challenge_reused')).toHaveLength(N - 1);
      const inside = await times(N, () =>
        s.withWriteTx(async (tx) => {
          await yieldTurn();
          return tx.challenges.consume('c2', T0 + 1);
        }),
      );
      expect(inside.filter((x) => x.ok)).toHaveLength(1);
    });

    it(`${N} concurrent transactions answering one request id store one answer and all return it`, async () => {
      const answers = await times(N, (i) =>
        s.withWriteTx(async (tx) => {
          const stored = await tx.idempotency.get('req-1');
          if (stored) return stored.response;
          await yieldTurn();
          const response = `{"serial":"${i}"}`;
          await tx.idempotency.put({
            requestId: 'req-1',
            requestHash: 'ab'.repeat(32),
            signer: 'inst sha256:00',
            op: 'renew',
            response,
            createdAt: T0,
          });
          return response;
        }),
      );
      expect(new Set(answers).size).toBe(1);
      expect((await s.idempotency.get('req-1'))?.response).toBe(answers[0]);
    });

    it('a second put for a stored request id is refused and the first answer stays', async () => {
      const rec = {
        requestId: 'req-1',
        requestHash: 'ab'.repeat(32),
        signer: 's',
        op: 'join',
        response: 'first',
        createdAt: T0,
      };
      await s.idempotency.put(rec);
      await expect(s.idempotency.put({ ...rec, response: 'second' })).rejects.toThrow();
      await expect(s.withWriteTx((tx) => tx.idempotency.put({ ...rec, response: 'third' }))).rejects.toThrow();
      expect((await s.idempotency.get('req-1'))?.response).toBe('first');
    });

    it(`of ${N} concurrent renewals of one generation exactly one advances it`, async () => {
      await s.instances.create(instance('i1', { generation: 1 }));
      const outcomes = await times(N, (i) =>
        s.withWriteTx(async (tx) => {
          const fresh = (await tx.instances.get('i1'))!;
          await yieldTurn();
          if (fresh.generation !== 1) return 'generation_mismatch';
          const serial = (0x100 + i).toString(16);
          await tx.certificates.insert(cert(serial, 'i1', { generation: 2 }));
          await tx.instances.recordIssue('i1', {
            generation: 2,
            serial,
            notAfter: T0 + MIN,
            keyStorage: 'software',
            exportable: true,
            now: T0,
          });
          return 'ok';
        }),
      );
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
      const inst = (await s.instances.get('i1'))!;
      expect(inst.generation).toBe(2);
      expect((await s.certificates.listByInstance('i1')).map((c) => c.serial)).toEqual([inst.currentSerial]);
    });

    it(`audit appends from ${N} concurrent transactions and single appends form one chain`, async () => {
      await times(N, (i) =>
        i % 4 === 0
          ? s.audit.append({ action: 'lock', outcome: 'ok', details: { i } }, T0 + i)
          : s.withWriteTx(async (tx) => {
              await yieldTurn();
              await tx.audit.append({ action: 'renew', outcome: 'ok', details: { i } }, T0 + i);
              await yieldTurn();
              return tx.audit.append({ action: 'issue', outcome: 'ok', details: { i } }, T0 + i);
            }),
      );
      const rows = await s.audit.list();
      const expected = N + (N - N / 4);
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: expected }, (_, k) => k + 1));
      for (let k = 1; k < rows.length; k++) expect(rows[k]!.prevHash).toBe(rows[k - 1]!.hash);
      expect(await s.audit.verify()).toEqual({ ok: true, rows: expected });
      // Both appends of one transaction are adjacent: no other transaction's row between them.
      for (const r of rows.filter((x) => x.action === 'renew'))
        expect(rows[r.seq]).toMatchObject({ action: 'issue', details: r.details });
    });
  });
}
