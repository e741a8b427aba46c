/** Conformance: join tokens, instances, bot locks, certificates. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import type { InstanceRecord } from '../../../../src/server/store/types.js';
import { MIN, T0, cert, instance } from './fixtures.js';

export function identitySuites(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('tokens', () => {
    const tok = (hash: string, expiresAt = T0 + 15 * MIN) => ({ hash, bot: 'edge', createdAt: T0, expiresAt });

    it('consumes once: ok, then token_reused', async () => {
      await s.tokens.create(tok('h1'));
      const r = await s.tokens.consume('h1', T0 + MIN, 'inst-1');
      expect(r).toEqual({
        ok: true,
        token: { hash: 'h1', bot: 'edge', createdAt: T0, expiresAt: T0 + 15 * MIN, usedAt: T0 + MIN, usedBy: 'inst-1' },
      });
      expect(await s.tokens.consume('h1', T0 + 2 * MIN, 'inst-2')).toEqual({ ok: false, reason: 'token_reused' });
      expect((await s.tokens.list())[0]!.usedBy).toBe('inst-1');
    });

    it('tells unknown from expired; expiry is exclusive; reuse wins over expiry', async () => {
      await s.tokens.create(tok('h1'));
      await s.tokens.create(tok('h2'));
      expect(await s.tokens.consume('nope', T0, 'i')).toEqual({ ok: false, reason: 'token_invalid' });
      expect(await s.tokens.consume('h1', T0 + 15 * MIN, 'i')).toEqual({ ok: false, reason: 'token_expired' });
      expect((await s.tokens.list()).find((t) => t.hash === 'h1')!.usedAt).toBeNull();
      expect((await s.tokens.consume('h2', T0 + 15 * MIN - 1, 'i')).ok).toBe(true);
      expect(await s.tokens.consume('h2', T0 + 60 * MIN, 'i')).toEqual({ ok: false, reason: 'token_reused' });
    });

    it('refuses a duplicate hash', async () => {
      await s.tokens.create(tok('h1'));
      await expect(s.tokens.create(tok('h1'))).rejects.toThrow();
    });

    it('lists by creation and prunes expired and used tokens older than the cutoff', async () => {
      await s.tokens.create({ hash: 'b', bot: 'edge', createdAt: T0 + 1, expiresAt: T0 + 10 * MIN });
      await s.tokens.create({ hash: 'a', bot: 'edge', createdAt: T0, expiresAt: T0 + 10 * MIN });
      await s.tokens.create({ hash: 'c', bot: 'edge', createdAt: T0 + 2, expiresAt: T0 + 100 * MIN });
      await s.tokens.create({ hash: 'd', bot: 'edge', createdAt: T0 + 3, expiresAt: T0 + 100 * MIN });
      expect((await s.tokens.list()).map((t) => t.hash)).toEqual(['a', 'b', 'c', 'd']);
      await s.tokens.consume('c', T0 + MIN, 'i');
      await s.tokens.consume('d', T0 + 30 * MIN, 'i');
      // a, b expired before the cutoff; c used before it; d used after it and not expired.
      expect(await s.tokens.prune(T0 + 20 * MIN)).toBe(3);
      expect((await s.tokens.list()).map((t) => t.hash)).toEqual(['d']);
      expect(await s.tokens.prune(T0 + 20 * MIN)).toBe(0);
    });
  });

  describe('instances', () => {
    it('creates with defaults and reads back', async () => {
      await s.instances.create(
        instance('i1', { facts: { ek: 'sha256:00', nested: { a: [1, 2] } }, keyStorage: 'tpm', exportable: false }),
      );
      const expected: InstanceRecord = {
        id: 'i1',
        bot: 'edge',
        joinMethod: 'token',
        spiffeId: 'spiffe://example.org/bot/edge/i1',
        generation: 0,
        locked: false,
        lockReason: null,
        facts: { ek: 'sha256:00', nested: { a: [1, 2] } },
        keyStorage: 'tpm',
        exportable: false,
        createdAt: T0,
        updatedAt: T0,
        lastSeenAt: T0,
        currentSerial: null,
        currentNotAfter: null,
      };
      expect(await s.instances.get('i1')).toEqual(expected);
      expect(await s.instances.get('nope')).toBeUndefined();
    });

    it('refuses a duplicate id and an unknown key storage', async () => {
      await s.instances.create(instance('i1'));
      await expect(s.instances.create(instance('i1'))).rejects.toThrow();
      await expect(s.instances.create(instance('i2', { keyStorage: 'floppy' as never }))).rejects.toThrow();
      expect(await s.instances.get('i2')).toBeUndefined();
    });

    it('lists in creation order, optionally by bot', async () => {
      await s.instances.create(instance('c', { createdAt: T0 + 2 }));
      await s.instances.create(instance('a', { createdAt: T0 + 3, bot: 'ci' }));
      await s.instances.create(instance('b', { createdAt: T0 + 1 }));
      expect((await s.instances.list()).map((i) => i.id)).toEqual(['b', 'c', 'a']);
      expect((await s.instances.list({ bot: 'edge' })).map((i) => i.id)).toEqual(['b', 'c']);
      expect((await s.instances.list({ bot: 'ci' })).map((i) => i.id)).toEqual(['a']);
      expect(await s.instances.list({ bot: 'none' })).toEqual([]);
      expect((await s.instances.list({})).length).toBe(3);
    });

    it('records an issue', async () => {
      await s.instances.create(instance('i1'));
      await s.instances.recordIssue('i1', {
        generation: 1,
        serial: '0a1b',
        notAfter: T0 + 60 * MIN,
        keyStorage: 'tpm',
        exportable: false,
        now: T0 + 5,
      });
      const i = (await s.instances.get('i1'))!;
      expect(i).toMatchObject({
        generation: 1,
        currentSerial: '0a1b',
        currentNotAfter: T0 + 60 * MIN,
        keyStorage: 'tpm',
        exportable: false,
        updatedAt: T0 + 5,
        lastSeenAt: T0 + 5,
        createdAt: T0,
      });
      await expect(
        s.instances.recordIssue('nope', {
          generation: 1,
          serial: '01',
          notAfter: 1,
          keyStorage: 'software',
          exportable: true,
          now: 1,
        }),
      ).rejects.toThrow(/no instance/);
    });

    it('locks and unlocks', async () => {
      await s.instances.create(instance('i1'));
      expect(await s.instances.setLocked('i1', true, 'generation reuse', T0 + 7)).toBe(true);
      expect(await s.instances.get('i1')).toMatchObject({
        locked: true,
        lockReason: 'generation reuse',
        updatedAt: T0 + 7,
      });
      expect(await s.instances.setLocked('i1', false, null, T0 + 8)).toBe(true);
      expect(await s.instances.get('i1')).toMatchObject({ locked: false, lockReason: null, updatedAt: T0 + 8 });
      expect(await s.instances.setLocked('nope', true, 'x', T0)).toBe(false);
    });

    it('merges facts', async () => {
      await s.instances.create(instance('i1', { facts: { a: 1, b: { c: 2 } } }));
      await s.instances.updateFacts('i1', { b: { d: 3 }, e: 'x' }, T0 + 9);
      expect(await s.instances.get('i1')).toMatchObject({ facts: { a: 1, b: { d: 3 }, e: 'x' }, updatedAt: T0 + 9 });
      await expect(s.instances.updateFacts('nope', {}, T0)).rejects.toThrow(/no instance/);
    });
  });

  describe('bot locks', () => {
    it('locks, relocks, lists and unlocks', async () => {
      expect(await s.botLocks.isLocked('edge')).toBe(false);
      await s.botLocks.setLocked('edge', true, 'compromise', T0);
      await s.botLocks.setLocked('ci', true, null, T0 + 1);
      expect(await s.botLocks.isLocked('edge')).toBe(true);
      expect(await s.botLocks.listLocked()).toEqual([
        { bot: 'ci', reason: null, at: T0 + 1 },
        { bot: 'edge', reason: 'compromise', at: T0 },
      ]);
      await s.botLocks.setLocked('edge', true, 'still', T0 + 2);
      expect((await s.botLocks.listLocked())[1]).toEqual({ bot: 'edge', reason: 'still', at: T0 + 2 });
      await s.botLocks.setLocked('edge', false, null, T0 + 3);
      await s.botLocks.setLocked('never', false, null, T0 + 3);
      expect(await s.botLocks.isLocked('edge')).toBe(false);
      expect((await s.botLocks.listLocked()).map((l) => l.bot)).toEqual(['ci']);
    });
  });

  describe('certificates', () => {
    it('inserts, gets and lists by instance', async () => {
      await s.instances.create(instance('i1'));
      const c2 = cert('02', 'i1', { generation: 2, keyStorage: 'tpm', exportable: false });
      const c1 = cert('01', 'i1');
      await s.certificates.insert(c2);
      await s.certificates.insert(c1);
      expect(await s.certificates.get('01')).toEqual(c1);
      expect(await s.certificates.get('02')).toEqual(c2);
      expect(await s.certificates.get('03')).toBeUndefined();
      expect((await s.certificates.listByInstance('i1')).map((c) => c.serial)).toEqual(['01', '02']);
      expect(await s.certificates.listByInstance('i2')).toEqual([]);
    });

    it('refuses duplicate serials, non-lowercase-hex serials and unknown instances', async () => {
      await s.instances.create(instance('i1'));
      await s.certificates.insert(cert('0a', 'i1'));
      await expect(s.certificates.insert(cert('0a', 'i1'))).rejects.toThrow();
      await expect(s.certificates.insert(cert('0A', 'i1'))).rejects.toThrow();
      await expect(s.certificates.insert(cert('0a:1b', 'i1'))).rejects.toThrow();
      await expect(s.certificates.insert(cert('', 'i1'))).rejects.toThrow();
      await expect(s.certificates.insert(cert('0b', 'ghost'))).rejects.toThrow();
      expect(await s.certificates.get('0b')).toBeUndefined();
    });

    it('counts only current, unexpired certificates expiring before the cutoff, per bot', async () => {
      const now = T0 + 30 * MIN;
      const soon = now + 10 * MIN;
      const before = now + 20 * MIN;
      const issue = async (id: string, bot: string, serial: string, notAfter: number, generation = 1) => {
        await s.certificates.insert(cert(serial, id, { bot, notAfter, generation }));
        await s.instances.recordIssue(id, {
          generation,
          serial,
          notAfter,
          keyStorage: 'software',
          exportable: true,
          now,
        });
      };
      for (const [id, bot] of [
        ['a', 'edge'],
        ['b', 'edge'],
        ['c', 'ci'],
        ['d', 'ci'],
        ['e', 'ci'],
        ['f', 'db'],
      ] as const) {
        await s.instances.create(instance(id, { bot }));
      }
      await issue('a', 'edge', 'a1', soon); // counted
      await issue('b', 'edge', 'b1', soon); // superseded below: not counted
      await issue('b', 'edge', 'b2', before + MIN, 2); // current, but after the cutoff
      await issue('c', 'ci', 'c1', soon); // counted
      await issue('d', 'ci', 'd1', now); // expired exactly at now: not counted
      await issue('e', 'ci', 'e1', before); // notAfter == before: not counted (strict)
      await s.instances.create(instance('g', { bot: 'db' })); // never issued
      await s.certificates.insert(cert('f1', 'f', { bot: 'db', notAfter: soon })); // not current
      expect(await s.certificates.expiringBefore(before, now)).toEqual([
        { bot: 'ci', count: 1 },
        { bot: 'edge', count: 1 },
      ]);
      expect(await s.certificates.expiringBefore(now, now)).toEqual([]);
    });
  });
}
