/** Conformance: join tokens, instances, bot locks, certificates. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { InstanceRecord, Stores } from '../../../../src/server/store/types.js';
import { MIN, T0, cert, instance } from './fixtures.js';

export function identitySuites(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('tokens', () => {
    const tok = (hash: string, expiresAt = T0 + 15 * MIN) => ({ hash, bot: 'edge', createdAt: T0, expiresAt });

    it('consumes once: ok, then token_reused', () => {
      s.tokens.create(tok('h1'));
      const r = s.tokens.consume('h1', T0 + MIN, 'inst-1');
      expect(r).toEqual({
        ok: true,
        token: { hash: 'h1', bot: 'edge', createdAt: T0, expiresAt: T0 + 15 * MIN, usedAt: T0 + MIN, usedBy: 'inst-1' },
      });
      expect(s.tokens.consume('h1', T0 + 2 * MIN, 'inst-2')).toEqual({ ok: false, reason: 'token_reused' });
      expect(s.tokens.list()[0]!.usedBy).toBe('inst-1');
    });

    it('tells unknown from expired; expiry is exclusive; reuse wins over expiry', () => {
      s.tokens.create(tok('h1'));
      s.tokens.create(tok('h2'));
      expect(s.tokens.consume('nope', T0, 'i')).toEqual({ ok: false, reason: 'token_invalid' });
      expect(s.tokens.consume('h1', T0 + 15 * MIN, 'i')).toEqual({ ok: false, reason: 'token_expired' });
      expect(s.tokens.list().find((t) => t.hash === 'h1')!.usedAt).toBeNull();
      expect(s.tokens.consume('h2', T0 + 15 * MIN - 1, 'i').ok).toBe(true);
      expect(s.tokens.consume('h2', T0 + 60 * MIN, 'i')).toEqual({ ok: false, reason: 'token_reused' });
    });

    it('refuses a duplicate hash', () => {
      s.tokens.create(tok('h1'));
      expect(() => s.tokens.create(tok('h1'))).toThrow();
    });

    it('lists by creation and prunes expired and used tokens older than the cutoff', () => {
      s.tokens.create({ hash: 'b', bot: 'edge', createdAt: T0 + 1, expiresAt: T0 + 10 * MIN });
      s.tokens.create({ hash: 'a', bot: 'edge', createdAt: T0, expiresAt: T0 + 10 * MIN });
      s.tokens.create({ hash: 'c', bot: 'edge', createdAt: T0 + 2, expiresAt: T0 + 100 * MIN });
      s.tokens.create({ hash: 'd', bot: 'edge', createdAt: T0 + 3, expiresAt: T0 + 100 * MIN });
      expect(s.tokens.list().map((t) => t.hash)).toEqual(['a', 'b', 'c', 'd']);
      s.tokens.consume('c', T0 + MIN, 'i');
      s.tokens.consume('d', T0 + 30 * MIN, 'i');
      // a, b expired before the cutoff; c used before it; d used after it and not expired.
      expect(s.tokens.prune(T0 + 20 * MIN)).toBe(3);
      expect(s.tokens.list().map((t) => t.hash)).toEqual(['d']);
      expect(s.tokens.prune(T0 + 20 * MIN)).toBe(0);
    });
  });

  describe('instances', () => {
    it('creates with defaults and reads back', () => {
      s.instances.create(instance('i1', { facts: { ek: 'sha256:00', nested: { a: [1, 2] } }, keyStorage: 'tpm', exportable: false }));
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
      expect(s.instances.get('i1')).toEqual(expected);
      expect(s.instances.get('nope')).toBeUndefined();
    });

    it('refuses a duplicate id and an unknown key storage', () => {
      s.instances.create(instance('i1'));
      expect(() => s.instances.create(instance('i1'))).toThrow();
      expect(() => s.instances.create(instance('i2', { keyStorage: 'floppy' as never }))).toThrow();
      expect(s.instances.get('i2')).toBeUndefined();
    });

    it('lists in creation order, optionally by bot', () => {
      s.instances.create(instance('c', { createdAt: T0 + 2 }));
      s.instances.create(instance('a', { createdAt: T0 + 3, bot: 'ci' }));
      s.instances.create(instance('b', { createdAt: T0 + 1 }));
      expect(s.instances.list().map((i) => i.id)).toEqual(['b', 'c', 'a']);
      expect(s.instances.list({ bot: 'edge' }).map((i) => i.id)).toEqual(['b', 'c']);
      expect(s.instances.list({ bot: 'ci' }).map((i) => i.id)).toEqual(['a']);
      expect(s.instances.list({ bot: 'none' })).toEqual([]);
      expect(s.instances.list({}).length).toBe(3);
    });

    it('records an issue', () => {
      s.instances.create(instance('i1'));
      s.instances.recordIssue('i1', { generation: 1, serial: '0a1b', notAfter: T0 + 60 * MIN, keyStorage: 'tpm', exportable: false, now: T0 + 5 });
      const i = s.instances.get('i1')!;
      expect(i).toMatchObject({ generation: 1, currentSerial: '0a1b', currentNotAfter: T0 + 60 * MIN, keyStorage: 'tpm', exportable: false, updatedAt: T0 + 5, lastSeenAt: T0 + 5, createdAt: T0 });
      expect(() => s.instances.recordIssue('nope', { generation: 1, serial: '01', notAfter: 1, keyStorage: 'software', exportable: true, now: 1 })).toThrow(/no instance/);
    });

    it('locks and unlocks', () => {
      s.instances.create(instance('i1'));
      expect(s.instances.setLocked('i1', true, 'generation reuse', T0 + 7)).toBe(true);
      expect(s.instances.get('i1')).toMatchObject({ locked: true, lockReason: 'generation reuse', updatedAt: T0 + 7 });
      expect(s.instances.setLocked('i1', false, null, T0 + 8)).toBe(true);
      expect(s.instances.get('i1')).toMatchObject({ locked: false, lockReason: null, updatedAt: T0 + 8 });
      expect(s.instances.setLocked('nope', true, 'x', T0)).toBe(false);
    });

    it('merges facts', () => {
      s.instances.create(instance('i1', { facts: { a: 1, b: { c: 2 } } }));
      s.instances.updateFacts('i1', { b: { d: 3 }, e: 'x' }, T0 + 9);
      expect(s.instances.get('i1')).toMatchObject({ facts: { a: 1, b: { d: 3 }, e: 'x' }, updatedAt: T0 + 9 });
      expect(() => s.instances.updateFacts('nope', {}, T0)).toThrow(/no instance/);
    });
  });

  describe('bot locks', () => {
    it('locks, relocks, lists and unlocks', () => {
      expect(s.botLocks.isLocked('edge')).toBe(false);
      s.botLocks.setLocked('edge', true, 'compromise', T0);
      s.botLocks.setLocked('ci', true, null, T0 + 1);
      expect(s.botLocks.isLocked('edge')).toBe(true);
      expect(s.botLocks.listLocked()).toEqual([
        { bot: 'ci', reason: null, at: T0 + 1 },
        { bot: 'edge', reason: 'compromise', at: T0 },
      ]);
      s.botLocks.setLocked('edge', true, 'still', T0 + 2);
      expect(s.botLocks.listLocked()[1]).toEqual({ bot: 'edge', reason: 'still', at: T0 + 2 });
      s.botLocks.setLocked('edge', false, null, T0 + 3);
      s.botLocks.setLocked('never', false, null, T0 + 3);
      expect(s.botLocks.isLocked('edge')).toBe(false);
      expect(s.botLocks.listLocked().map((l) => l.bot)).toEqual(['ci']);
    });
  });

  describe('certificates', () => {
    it('inserts, gets and lists by instance', () => {
      s.instances.create(instance('i1'));
      const c2 = cert('02', 'i1', { generation: 2, keyStorage: 'tpm', exportable: false });
      const c1 = cert('01', 'i1');
      s.certificates.insert(c2);
      s.certificates.insert(c1);
      expect(s.certificates.get('01')).toEqual(c1);
      expect(s.certificates.get('02')).toEqual(c2);
      expect(s.certificates.get('03')).toBeUndefined();
      expect(s.certificates.listByInstance('i1').map((c) => c.serial)).toEqual(['01', '02']);
      expect(s.certificates.listByInstance('i2')).toEqual([]);
    });

    it('refuses duplicate serials, non-lowercase-hex serials and unknown instances', () => {
      s.instances.create(instance('i1'));
      s.certificates.insert(cert('0a', 'i1'));
      expect(() => s.certificates.insert(cert('0a', 'i1'))).toThrow();
      expect(() => s.certificates.insert(cert('0A', 'i1'))).toThrow();
      expect(() => s.certificates.insert(cert('0a:1b', 'i1'))).toThrow();
      expect(() => s.certificates.insert(cert('', 'i1'))).toThrow();
      expect(() => s.certificates.insert(cert('0b', 'ghost'))).toThrow();
      expect(s.certificates.get('0b')).toBeUndefined();
    });

    it('counts only current, unexpired certificates expiring before the cutoff, per bot', () => {
      const now = T0 + 30 * MIN;
      const soon = now + 10 * MIN;
      const before = now + 20 * MIN;
      const issue = (id: string, bot: string, serial: string, notAfter: number, generation = 1) => {
        s.certificates.insert(cert(serial, id, { bot, notAfter, generation }));
        s.instances.recordIssue(id, { generation, serial, notAfter, keyStorage: 'software', exportable: true, now });
      };
      for (const [id, bot] of [['a', 'edge'], ['b', 'edge'], ['c', 'ci'], ['d', 'ci'], ['e', 'ci'], ['f', 'db']] as const) {
        s.instances.create(instance(id, { bot }));
      }
      issue('a', 'edge', 'a1', soon); // counted
      issue('b', 'edge', 'b1', soon); // superseded below: not counted
      issue('b', 'edge', 'b2', before + MIN, 2); // current, but after the cutoff
      issue('c', 'ci', 'c1', soon); // counted
      issue('d', 'ci', 'd1', now); // expired exactly at now: not counted
      issue('e', 'ci', 'e1', before); // notAfter == before: not counted (strict)
      s.instances.create(instance('g', { bot: 'db' })); // never issued
      s.certificates.insert(cert('f1', 'f', { bot: 'db', notAfter: soon })); // not current
      expect(s.certificates.expiringBefore(before, now)).toEqual([
        { bot: 'ci', count: 1 },
        { bot: 'edge', count: 1 },
      ]);
      expect(s.certificates.expiringBefore(now, now)).toEqual([]);
    });
  });

}
