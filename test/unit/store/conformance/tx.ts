/** Conformance: Stores.tx commits whole, rolls back whole, nests as savepoints. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { MIN, T0, cert, instance } from './fixtures.js';

export function txSuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('tx', () => {
    it('commits and returns the value', () => {
      const v = s.tx(() => {
        s.instances.create(instance('i1'));
        s.certificates.insert(cert('01', 'i1'));
        return 42;
      });
      expect(v).toBe(42);
      expect(s.certificates.get('01')).toBeDefined();
    });

    it('allows the certificate before its instance inside one transaction', () => {
      s.tx(() => {
        s.certificates.insert(cert('01', 'late'));
        s.instances.create(instance('late'));
      });
      expect(s.certificates.listByInstance('late')).toHaveLength(1);
    });

    it('leaves nothing behind when fn throws', () => {
      s.tokens.create({ hash: 'h', bot: 'edge', createdAt: T0, expiresAt: T0 + MIN });
      s.audit.append({ action: 'before', outcome: 'ok' }, T0);
      const boom = new Error('boom');
      expect(() =>
        s.tx(() => {
          expect(s.tokens.consume('h', T0 + 1, 'i1').ok).toBe(true);
          s.instances.create(instance('i1'));
          s.certificates.insert(cert('01', 'i1'));
          s.instances.recordIssue('i1', { generation: 1, serial: '01', notAfter: T0 + MIN, keyStorage: 'software', exportable: true, now: T0 });
          s.idempotency.put({ requestId: 'r', requestHash: 'x', signer: 'sha256:k', op: 'join', response: '{}', createdAt: T0 });
          s.audit.append({ action: 'join', outcome: 'ok' }, T0 + 1);
          s.resources.put('bot', 'edge', { a: 1 }, T0);
          s.botLocks.setLocked('edge', true, null, T0);
          s.admin.setAdminTokenHash('cc');
          throw boom;
        }),
      ).toThrow(boom);
      expect(s.tokens.list()[0]!.usedAt).toBeNull();
      expect(s.instances.list()).toEqual([]);
      expect(s.certificates.get('01')).toBeUndefined();
      expect(s.idempotency.get('r')).toBeUndefined();
      expect(s.audit.list().map((r) => r.action)).toEqual(['before']);
      expect(s.resources.list('bot')).toEqual([]);
      expect(s.botLocks.isLocked('edge')).toBe(false);
      expect(s.admin.getAdminTokenHash()).toBeUndefined();
      // The chain continues from the surviving head.
      expect(s.audit.append({ action: 'after', outcome: 'ok' }, T0 + 2).seq).toBe(2);
      expect(s.audit.verify()).toEqual({ ok: true, rows: 2 });
    });

    it('nests: a caught inner failure undoes only the inner part', () => {
      s.tx(() => {
        s.instances.create(instance('outer'));
        expect(() =>
          s.tx(() => {
            s.instances.create(instance('inner'));
            throw new Error('inner');
          }),
        ).toThrow('inner');
        expect(s.tx(() => s.instances.get('outer')?.id)).toBe('outer');
      });
      expect(s.instances.list().map((i) => i.id)).toEqual(['outer']);
    });

    it('nests: an uncaught inner failure undoes everything', () => {
      expect(() =>
        s.tx(() => {
          s.instances.create(instance('outer'));
          s.tx(() => {
            s.instances.create(instance('inner'));
            throw new Error('inner');
          });
        }),
      ).toThrow('inner');
      expect(s.instances.list()).toEqual([]);
    });

    it('refuses an async fn', () => {
      expect(() => s.tx((async () => 1) as unknown as () => number)).toThrow(TypeError);
    });
  });
}
