/** Conformance: policy resources, idempotency records, the audit log, the admin credential. */
import { createHash } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { T0 } from './fixtures.js';

export function recordSuites(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('resources', () => {
    it('reports created, unchanged (deep-equal, any key order) and updated', async () => {
      expect(await s.resources.put('bot', 'edge', { roles: ['a'], ttl: '1h', nested: { x: 1, y: 2 } }, T0)).toBe(
        'created',
      );
      expect(await s.resources.put('bot', 'edge', { nested: { y: 2, x: 1 }, ttl: '1h', roles: ['a'] }, T0 + 1)).toBe(
        'unchanged',
      );
      expect(await s.resources.get('bot', 'edge')).toEqual({
        kind: 'bot',
        name: 'edge',
        spec: { roles: ['a'], ttl: '1h', nested: { x: 1, y: 2 } },
        createdAt: T0,
        updatedAt: T0,
      });
      expect(
        await s.resources.put('bot', 'edge', { roles: ['a', 'b'], ttl: '1h', nested: { x: 1, y: 2 } }, T0 + 2),
      ).toBe('updated');
      const r = (await s.resources.get('bot', 'edge'))!;
      expect(r.spec.roles).toEqual(['a', 'b']);
      expect(r.createdAt).toBe(T0);
      expect(r.updatedAt).toBe(T0 + 2);
    });

    it('array order matters for equality', async () => {
      await s.resources.put('role', 'r', { allow: ['a', 'b'] }, T0);
      expect(await s.resources.put('role', 'r', { allow: ['b', 'a'] }, T0)).toBe('updated');
    });

    it('keeps kinds apart, lists by name, deletes', async () => {
      await s.resources.put('role', 'zeta', {}, T0);
      await s.resources.put('role', 'alpha', {}, T0);
      await s.resources.put('bot', 'alpha', { b: true }, T0);
      expect((await s.resources.list('role')).map((r) => r.name)).toEqual(['alpha', 'zeta']);
      expect((await s.resources.list('bot')).map((r) => r.spec)).toEqual([{ b: true }]);
      expect(await s.resources.list('join_rule')).toEqual([]);
      expect(await s.resources.get('join_rule', 'alpha')).toBeUndefined();
      expect(await s.resources.delete('role', 'alpha')).toBe(true);
      expect(await s.resources.delete('role', 'alpha')).toBe(false);
      expect(await s.resources.get('bot', 'alpha')).toBeDefined();
    });

    it('stores workload registration entries (kind workload, issue #17) apart from the other kinds', async () => {
      const spec = { spiffe_id: 'spiffe://example.org/web', selectors: ['unix:uid:1000'], nodes: { bots: ['edge'] } };
      expect(await s.resources.put('workload', 'web', spec, T0)).toBe('created');
      await s.resources.put('bot', 'web', { roles: ['a'] }, T0);
      expect(await s.resources.get('workload', 'web')).toMatchObject({ kind: 'workload', name: 'web', spec });
      expect((await s.resources.list('workload')).map((r) => r.name)).toEqual(['web']);
      expect(await s.resources.delete('workload', 'web')).toBe(true);
      expect(await s.resources.get('bot', 'web')).toBeDefined();
    });
  });

  describe('idempotency', () => {
    const rec = (requestId: string, createdAt = T0) => ({
      requestId,
      requestHash: 'ff'.repeat(32),
      signer: 'i-1 sha256:ab',
      op: 'join',
      response: '{"a":1}',
      createdAt,
    });

    it('stores, returns, refuses a second put, prunes', async () => {
      expect(await s.idempotency.get('r1')).toBeUndefined();
      await s.idempotency.put(rec('r1'));
      await s.idempotency.put(rec('r2', T0 + 10));
      expect(await s.idempotency.get('r1')).toEqual(rec('r1'));
      await expect(s.idempotency.put({ ...rec('r1'), response: 'other' })).rejects.toThrow();
      expect((await s.idempotency.get('r1'))!.response).toBe('{"a":1}');
      expect(await s.idempotency.prune(T0 + 10)).toBe(1);
      expect(await s.idempotency.get('r1')).toBeUndefined();
      expect(await s.idempotency.get('r2')).toBeDefined();
    });

    it('prunes in chunks, the oldest first, when given a limit', async () => {
      for (let i = 0; i < 5; i++) await s.idempotency.put(rec(`c${i}`, T0 + 5 - i));
      expect(await s.idempotency.prune(T0 + 4, 2)).toBe(2);
      // c4 (T0+1) and c3 (T0+2) were the oldest; c2 (T0+3) and the rest stay.
      expect(await s.idempotency.get('c4')).toBeUndefined();
      expect(await s.idempotency.get('c3')).toBeUndefined();
      expect(await s.idempotency.get('c2')).toBeDefined();
      expect(await s.idempotency.prune(T0 + 4, 2)).toBe(1);
      expect(await s.idempotency.prune(T0 + 4, 2)).toBe(0);
      expect(await s.idempotency.get('c1')).toBeDefined();
      expect(await s.idempotency.get('c0')).toBeDefined();
    });
  });

  describe('audit', () => {
    it('appends with defaults and links rows', async () => {
      const a = await s.audit.append({ action: 'token_create', outcome: 'ok' }, T0);
      expect(a).toMatchObject({
        seq: 1,
        at: T0,
        action: 'token_create',
        outcome: 'ok',
        code: null,
        bot: null,
        instanceId: null,
        method: null,
        remote: null,
        details: {},
        prevHash: '0'.repeat(64),
      });
      expect(typeof a.actor).toBe('string');
      expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
      const b = await s.audit.append(
        {
          action: 'refuse',
          outcome: 'refused',
          code: 'token_reused',
          bot: 'edge',
          instanceId: 'i1',
          method: 'token',
          actor: 'agent',
          remote: '10.0.0.1',
          details: { z: 1, a: [true, null] },
        },
        T0 + 1,
      );
      expect(b.seq).toBe(2);
      expect(b.prevHash).toBe(a.hash);
      expect(await s.audit.list()).toEqual([a, b]);
      expect(await s.audit.verify()).toEqual({ ok: true, rows: 2 });
    });

    it('hashes the documented canonical form', async () => {
      const r = await s.audit.append(
        {
          action: 'join',
          outcome: 'ok',
          bot: 'edge',
          actor: 'agent',
          details: { serial: '0a', facts: { b: 2, a: 1 } },
        },
        T0,
      );
      const canonical =
        '{"action":"join","actor":"agent","at":1700000000000,"bot":"edge","code":null,' +
        '"details":{"facts":{"a":1,"b":2},"serial":"0a"},"instanceId":null,"method":null,' +
        '"outcome":"ok","remote":null,"seq":1}';
      const expected = createHash('sha256')
        .update('0'.repeat(64) + '\n' + canonical)
        .digest('hex');
      expect(r.hash).toBe(expected);
    });

    it('lists since a time with a limit, in chain order', async () => {
      for (let i = 0; i < 5; i++)
        await s.audit.append({ action: 'issue', outcome: 'ok', details: { i } }, T0 + i * 1000);
      expect((await s.audit.list({ since: T0 + 2000 })).map((r) => r.seq)).toEqual([3, 4, 5]);
      expect((await s.audit.list({ since: T0 + 2000, limit: 2 })).map((r) => r.seq)).toEqual([3, 4]);
      expect((await s.audit.list({ limit: 1 })).map((r) => r.seq)).toEqual([1]);
      expect(await s.audit.list({ since: T0 + 9000 })).toEqual([]);
    });

    it('lists after a sequence number (a tail reads only what is new), with since and limit as further bounds', async () => {
      // Stamps out of seq order, as rows stamped before their transaction committed can be.
      for (const [i, at] of [T0 + 3000, T0 + 1000, T0 + 4000, T0 + 2000, T0 + 5000].entries())
        await s.audit.append({ action: 'issue', outcome: 'ok', details: { i } }, at);
      expect((await s.audit.list({ afterSeq: 2 })).map((r) => r.seq)).toEqual([3, 4, 5]);
      expect((await s.audit.list({ afterSeq: 0 })).map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      expect((await s.audit.list({ afterSeq: 1, since: T0 + 2500 })).map((r) => r.seq)).toEqual([3, 5]);
      expect((await s.audit.list({ afterSeq: 1, limit: 2 })).map((r) => r.seq)).toEqual([2, 3]);
      expect(await s.audit.list({ afterSeq: 5 })).toEqual([]);
    });

    it('verifies an empty log', async () => {
      expect(await s.audit.verify()).toEqual({ ok: true, rows: 0 });
    });
  });

  describe('admin credential', () => {
    it('sets, gets and replaces the token hash', async () => {
      expect(await s.admin.getAdminTokenHash()).toBeUndefined();
      await s.admin.setAdminTokenHash('aa'.repeat(32));
      expect(await s.admin.getAdminTokenHash()).toBe('aa'.repeat(32));
      await s.admin.setAdminTokenHash('bb'.repeat(32));
      expect(await s.admin.getAdminTokenHash()).toBe('bb'.repeat(32));
    });

    it('remembers withdrawn keys, each once, oldest first, beside the token hash', async () => {
      expect(await s.admin.withdrawnKeys()).toEqual([]);
      const a = { kind: 'jwt', spkiSha256: 'a1'.repeat(32), at: 2000 };
      const b = { kind: 'ssh-user', spkiSha256: 'b2'.repeat(32), at: 1000 };
      await s.admin.rememberWithdrawnKey(a);
      await s.admin.rememberWithdrawnKey(b);
      await s.admin.rememberWithdrawnKey({ ...a, at: 9000 }); // again: the first record stays
      await s.admin.setAdminTokenHash('cc'.repeat(32));
      expect(await s.admin.withdrawnKeys()).toEqual([b, a]);
      expect(await s.admin.getAdminTokenHash()).toBe('cc'.repeat(32));
    });
  });
}
