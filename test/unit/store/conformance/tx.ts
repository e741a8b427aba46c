/**
 * Conformance: `withWriteTx` commits whole, rolls back whole, lets the transaction read its own
 * writes, and binds its stores to that one transaction (src/server/store/types.ts).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { MIN, T0, cert, instance, yieldTurn } from './fixtures.js';

export function txSuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('withWriteTx', () => {
    it('commits and returns the value', async () => {
      const v = await s.withWriteTx(async (tx) => {
        await tx.instances.create(instance('i1'));
        await yieldTurn();
        await tx.certificates.insert(cert('01', 'i1'));
        return 42;
      });
      expect(v).toBe(42);
      expect(await s.certificates.get('01')).toBeDefined();
    });

    it('allows the certificate before its instance inside one transaction', async () => {
      await s.withWriteTx(async (tx) => {
        await tx.certificates.insert(cert('01', 'late'));
        await tx.instances.create(instance('late'));
      });
      expect(await s.certificates.listByInstance('late')).toHaveLength(1);
    });

    it('rejects at commit when a reference is still missing, and leaves nothing', async () => {
      await expect(
        s.withWriteTx(async (tx) => {
          await tx.instances.create(instance('i1'));
          await tx.certificates.insert(cert('01', 'ghost'));
        }),
      ).rejects.toThrow();
      expect(await s.instances.get('i1')).toBeUndefined();
      expect(await s.certificates.get('01')).toBeUndefined();
    });

    it('sees its own writes inside the transaction', async () => {
      await s.tokens.create({ hash: 'h', bot: 'edge', createdAt: T0, expiresAt: T0 + MIN });
      await s.withWriteTx(async (tx) => {
        await tx.instances.create(instance('i1'));
        expect((await tx.instances.get('i1'))?.id).toBe('i1');
        expect((await tx.tokens.consume('h', T0 + 1, 'i1')).ok).toBe(true);
        expect((await tx.tokens.get('h'))?.usedBy).toBe('i1');
        expect(await tx.tokens.consume('h', T0 + 2, 'i2')).toEqual({ ok: false, reason: 'token_reused' });
        const a = await tx.audit.append({ action: 'join', outcome: 'ok' }, T0);
        expect(await tx.audit.head()).toEqual({ seq: a.seq, hash: a.hash });
      });
    });

    it('leaves nothing behind when fn throws (no partial rows), across awaits', async () => {
      await s.tokens.create({ hash: 'h', bot: 'edge', createdAt: T0, expiresAt: T0 + MIN });
      await s.challenges.create({
        id: 'c1',
        method: 'tpm',
        requestId: 'r',
        spkiHash: 'sha256:00',
        nonce: Buffer.alloc(32, 1),
        state: {},
        createdAt: T0,
        expiresAt: T0 + MIN,
      });
      await s.audit.append({ action: 'before', outcome: 'ok' }, T0);
      const boom = new Error('boom');
      await expect(
        s.withWriteTx(async (tx) => {
          expect((await tx.tokens.consume('h', T0 + 1, 'i1')).ok).toBe(true);
          expect(await tx.challenges.consume('c1', T0 + 1)).toEqual({ ok: true });
          await tx.instances.create(instance('i1'));
          await yieldTurn();
          await tx.certificates.insert(cert('01', 'i1'));
          await tx.instances.recordIssue('i1', {
            generation: 1,
            serial: '01',
            notAfter: T0 + MIN,
            keyStorage: 'software',
            exportable: true,
            now: T0,
          });
          await tx.idempotency.put({
            requestId: 'r',
            requestHash: 'x',
            signer: 'sha256:k',
            op: 'join',
            response: '{}',
            createdAt: T0,
          });
          await tx.audit.append({ action: 'join', outcome: 'ok' }, T0 + 1);
          await tx.resources.put('bot', 'edge', { a: 1 }, T0);
          await tx.botLocks.setLocked('edge', true, null, T0);
          await tx.admin.setAdminTokenHash('cc');
          await tx.keyBindings.bind({
            method: 'aws_iid',
            subject: 'i-1',
            keyHash: 'sha256:aa',
            rule: 'r',
            facts: {},
            createdAt: T0,
          });
          await tx.tokenReplay.record('https://a', 'j1', T0 + MIN, T0);
          await tx.devices.put({
            rule: null,
            serial: 'S1',
            ekPublicHash: null,
            idevidFingerprint: 'sha256:dd',
            manifest: {},
            importedAt: T0,
          });
          await yieldTurn();
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect((await s.tokens.list())[0]!.usedAt).toBeNull();
      expect((await s.challenges.get('c1'))!.usedAt).toBeNull();
      expect(await s.instances.list()).toEqual([]);
      expect(await s.certificates.get('01')).toBeUndefined();
      expect(await s.idempotency.get('r')).toBeUndefined();
      expect((await s.audit.list()).map((r) => r.action)).toEqual(['before']);
      expect(await s.resources.list('bot')).toEqual([]);
      expect(await s.botLocks.isLocked('edge')).toBe(false);
      expect(await s.admin.getAdminTokenHash()).toBeUndefined();
      expect(await s.keyBindings.list()).toEqual([]);
      expect(await s.tokenReplay.seen('https://a', 'j1')).toBe(false);
      expect(await s.devices.list()).toEqual([]);
      // The chain continues from the surviving head.
      expect((await s.audit.append({ action: 'after', outcome: 'ok' }, T0 + 2)).seq).toBe(2);
      expect(await s.audit.verify()).toEqual({ ok: true, rows: 2 });
    });

    it('store methods that are transactions of their own join the outer one and roll back with it', async () => {
      await expect(
        s.withWriteTx(async (tx) => {
          expect(await tx.resources.put('role', 'r', {}, T0)).toBe('created');
          await tx.instances.create(instance('i1', { facts: { a: 1 } }));
          await tx.instances.updateFacts('i1', { b: 2 }, T0 + 1);
          await tx.audit.append({ action: 'x', outcome: 'ok' }, T0);
          throw new Error('undo');
        }),
      ).rejects.toThrow('undo');
      expect(await s.resources.list('role')).toEqual([]);
      expect(await s.instances.get('i1')).toBeUndefined();
      expect(await s.audit.head()).toBeUndefined();
    });

    it('a store call that fails inside, rethrown, undoes the whole transaction', async () => {
      await expect(
        s.withWriteTx(async (tx) => {
          await tx.instances.create(instance('outer'));
          await tx.instances.create(instance('outer')); // duplicate: rejects
        }),
      ).rejects.toThrow();
      expect(await s.instances.list()).toEqual([]);
    });

    it('a store failure caught inside either commits the rest or rejects: never success without commit', async () => {
      const run = s.withWriteTx(async (tx) => {
        await tx.instances.create(instance('a'));
        await tx.instances.create(instance('a')).catch(() => undefined);
        await tx.instances.create(instance('b')).catch(() => undefined);
        return 'done';
      });
      const [settled] = await Promise.allSettled([run]);
      const ids = (await s.instances.list()).map((i) => i.id);
      if (settled!.status === 'fulfilled') {
        expect(settled.value).toBe('done');
        expect(ids).toEqual(['a', 'b']);
      } else {
        expect(ids).toEqual([]);
      }
    });

    it("refuses use of a transaction's stores after it ended", async () => {
      let leaked: Parameters<Parameters<Stores['withWriteTx']>[0]>[0] | undefined;
      await s.withWriteTx(async (tx) => {
        leaked = tx;
      });
      await expect(leaked!.instances.create(instance('late'))).rejects.toThrow(TypeError);
      await expect(leaked!.instances.get('late')).rejects.toThrow(TypeError);
      await expect(
        s.withWriteTx(async (tx) => {
          leaked = tx;
          throw new Error('rollback');
        }),
      ).rejects.toThrow('rollback');
      await expect(leaked!.audit.append({ action: 'x', outcome: 'ok' }, T0)).rejects.toThrow(TypeError);
      expect(await s.instances.list()).toEqual([]);
      expect(await s.audit.head()).toBeUndefined();
    });

    it('store methods report failures as rejections, never as synchronous throws', async () => {
      let p: Promise<unknown> | undefined;
      expect(() => {
        p = s.instances.recordIssue('nope', {
          generation: 1,
          serial: '01',
          notAfter: 1,
          keyStorage: 'software',
          exportable: true,
          now: 1,
        });
      }).not.toThrow();
      await expect(p).rejects.toThrow(/no instance/);
      await s.withWriteTx(async (tx) => {
        expect(() => {
          p = tx.instances.updateFacts('nope', {}, T0);
        }).not.toThrow();
        await expect(p).rejects.toThrow(/no instance/);
      });
    });
  });
}
