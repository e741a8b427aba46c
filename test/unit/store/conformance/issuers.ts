/**
 * Conformance: the issuer registry and the cRLNumber counters (src/server/store/issuer-registry-types.ts,
 * issue #15) — register once per name, statuses only move forward, counters never repeat and
 * never go below the floor the caller gives, also under concurrent calls.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import { T0 } from './fixtures.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

export function issuerRegistrySuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('issuer registry', () => {
    it('registers a name once; a second register of it writes nothing', async () => {
      expect(await s.issuers.register({ name: 'i2', certPem: PEM, createdAt: T0 })).toBe('created');
      expect(await s.issuers.register({ name: 'i2', certPem: 'other', createdAt: T0 + 1 })).toBe('exists');
      expect(await s.issuers.get('i2')).toEqual({
        name: 'i2',
        certPem: PEM,
        status: 'active',
        reason: null,
        createdAt: T0,
        updatedAt: T0,
      });
      expect(await s.issuers.get('nope')).toBeUndefined();
    });

    it('lists in byte order of name', async () => {
      for (const name of ['b', 'a-1', 'a', '9z']) await s.issuers.register({ name, certPem: PEM, createdAt: T0 });
      expect((await s.issuers.list()).map((r) => r.name)).toEqual(['9z', 'a', 'a-1', 'b']);
    });

    it('refuses a name outside [a-z0-9-]{1,32}', async () => {
      await expect(s.issuers.register({ name: 'Bad_Name', certPem: PEM, createdAt: T0 })).rejects.toThrow();
      await expect(s.issuers.register({ name: 'x'.repeat(33), certPem: PEM, createdAt: T0 })).rejects.toThrow();
      expect(await s.issuers.list()).toEqual([]);
    });

    it('moves a status forward only: active → retired → revoked, never back', async () => {
      await s.issuers.register({ name: 'i2', certPem: PEM, createdAt: T0 });
      expect(await s.issuers.setStatus('i2', 'retired', 'moved to i3', T0 + 1)).toMatchObject({
        status: 'retired',
        reason: 'moved to i3',
        updatedAt: T0 + 1,
      });
      // The same status again changes nothing (not even the time).
      expect(await s.issuers.setStatus('i2', 'retired', 'again', T0 + 2)).toMatchObject({
        status: 'retired',
        reason: 'moved to i3',
        updatedAt: T0 + 1,
      });
      expect(await s.issuers.setStatus('i2', 'revoked', 'key stolen', T0 + 3)).toMatchObject({
        status: 'revoked',
        reason: 'key stolen',
        updatedAt: T0 + 3,
      });
      // Revoked stays revoked.
      expect(await s.issuers.setStatus('i2', 'retired', 'undo', T0 + 4)).toMatchObject({ status: 'revoked' });
      expect(await s.issuers.get('i2')).toMatchObject({ status: 'revoked', reason: 'key stolen', createdAt: T0 });
    });

    it('revokes an active issuer directly; an unknown name is undefined', async () => {
      await s.issuers.register({ name: 'i3', certPem: PEM, createdAt: T0 });
      expect(await s.issuers.setStatus('i3', 'revoked', null, T0 + 5)).toMatchObject({
        status: 'revoked',
        reason: null,
      });
      expect(await s.issuers.setStatus('ghost', 'retired', null, T0)).toBeUndefined();
      await expect(s.issuers.setStatus('i3', 'active' as 'retired', null, T0)).rejects.toThrow(TypeError);
    });
  });

  describe('cRLNumber counters', () => {
    it('start at the floor, then grow by one, or jump to a higher floor', async () => {
      expect(await s.issuers.nextCrlNumber('ca-a', 1000)).toBe(1000);
      expect(await s.issuers.nextCrlNumber('ca-a', 1000)).toBe(1001);
      expect(await s.issuers.nextCrlNumber('ca-a', 5)).toBe(1002);
      expect(await s.issuers.nextCrlNumber('ca-a', 2000)).toBe(2000);
      // Per CRL issuer: another key has its own sequence.
      expect(await s.issuers.nextCrlNumber('ca-b', 7)).toBe(7);
      expect(await s.issuers.nextCrlNumber('ca-a', 1)).toBe(2001);
    });

    it('never hands out one number twice to concurrent callers', async () => {
      const T = 1_733_000_000_000;
      const got = await Promise.all(Array.from({ length: 25 }, () => s.issuers.nextCrlNumber('ca-c', T)));
      expect(new Set(got).size).toBe(25);
      expect([...got].sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => T + i));
    });

    it('refuses a bad floor or key', async () => {
      await expect(s.issuers.nextCrlNumber('ca', 0)).rejects.toThrow(TypeError);
      await expect(s.issuers.nextCrlNumber('ca', 1.5)).rejects.toThrow(TypeError);
      await expect(s.issuers.nextCrlNumber('', 1)).rejects.toThrow(TypeError);
    });
  });
}
