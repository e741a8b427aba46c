/** Conformance: join evidence state: key bindings (aws_iid), the jti replay cache, challenges, registered devices. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import type { KeyBindingRecord } from '../../../../src/server/store/types.js';
import { MIN, T0 } from './fixtures.js';

const binding = (subject: string, key: string, over: Partial<KeyBindingRecord> = {}): KeyBindingRecord => ({
  method: 'aws_iid',
  subject,
  keyHash: `sha256:${key.repeat(64).slice(0, 64)}`,
  rule: 'ec2',
  facts: { aws_account_id: '123456789012' },
  createdAt: T0,
  ...over,
});

export function bindingSuites(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  describe('key bindings', () => {
    it('the first bind wins; a later one with another key returns the binding in force', async () => {
      expect(await s.keyBindings.get('aws_iid', 'i-1')).toBeUndefined();
      expect(await s.keyBindings.bind(binding('i-1', 'a'))).toEqual(binding('i-1', 'a'));
      expect(await s.keyBindings.bind(binding('i-1', 'b', { createdAt: T0 + MIN }))).toEqual(binding('i-1', 'a'));
      expect((await s.keyBindings.get('aws_iid', 'i-1'))!.keyHash).toBe(binding('i-1', 'a').keyHash);
    });

    it('keeps methods apart, lists in order, resets', async () => {
      await s.keyBindings.bind(binding('i-2', 'a'));
      await s.keyBindings.bind(binding('i-1', 'a'));
      await s.keyBindings.bind(binding('i-1', 'c', { method: 'other' }));
      expect((await s.keyBindings.list({ method: 'aws_iid' })).map((b) => b.subject)).toEqual(['i-1', 'i-2']);
      expect((await s.keyBindings.list()).map((b) => `${b.method}/${b.subject}`)).toEqual([
        'aws_iid/i-1',
        'aws_iid/i-2',
        'other/i-1',
      ]);
      expect(await s.keyBindings.reset('aws_iid', 'i-1')).toBe(true);
      expect(await s.keyBindings.reset('aws_iid', 'i-1')).toBe(false);
      expect(await s.keyBindings.get('other', 'i-1')).toBeDefined();
      expect((await s.keyBindings.bind(binding('i-1', 'b'))).keyHash).toBe(binding('i-1', 'b').keyHash);
    });
  });

  describe('token replay cache', () => {
    it('records a (issuer, jti) once; other issuers are separate; expired rows are pruned', async () => {
      expect(await s.tokenReplay.seen('https://a', 'j1')).toBe(false);
      expect(await s.tokenReplay.record('https://a', 'j1', T0 + 5 * MIN, T0)).toBe(true);
      expect(await s.tokenReplay.record('https://a', 'j1', T0 + 5 * MIN, T0 + 1)).toBe(false);
      expect(await s.tokenReplay.seen('https://a', 'j1')).toBe(true);
      expect(await s.tokenReplay.record('https://b', 'j1', T0 + 5 * MIN, T0)).toBe(true);
      expect(await s.tokenReplay.prune(T0 + 6 * MIN)).toBe(2);
      expect(await s.tokenReplay.seen('https://a', 'j1')).toBe(false);
    });
  });

  describe('challenges', () => {
    const ch = (id: string, expiresAt = T0 + MIN) => ({
      id,
      method: 'tpm',
      requestId: 'req-1',
      spkiHash: 'sha256:ab',
      nonce: Buffer.alloc(32, 9),
      state: { chain: ['x'], n: 1 },
      createdAt: T0,
      expiresAt,
    });

    it('reads back, consumes once, tells unknown, expired (exclusive) and reused apart, prunes', async () => {
      await s.challenges.create(ch('c1'));
      await s.challenges.create(ch('c2'));
      expect(await s.challenges.get('c1')).toEqual({ ...ch('c1'), usedAt: null });
      expect(await s.challenges.consume('nope', T0)).toEqual({ ok: false, reason: 'challenge_invalid' });
      expect(await s.challenges.consume('c1', T0 + MIN)).toEqual({ ok: false, reason: 'challenge_expired' });
      expect(await s.challenges.consume('c2', T0 + MIN - 1)).toEqual({ ok: true });
      expect(await s.challenges.consume('c2', T0 + 2 * MIN)).toEqual({ ok: false, reason: 'challenge_reused' });
      expect((await s.challenges.get('c2'))!.usedAt).toBe(T0 + MIN - 1);
      await expect(s.challenges.create(ch('c1'))).rejects.toThrow();
      expect(await s.challenges.prune(T0 + MIN + 1)).toBe(2);
      expect(await s.challenges.get('c1')).toBeUndefined();
    });
  });

  describe('devices', () => {
    const dev = (fp: string, over: Record<string, unknown> = {}) => ({
      rule: 'factory',
      serial: `SN-${fp}`,
      ekPublicHash: null,
      idevidFingerprint: `sha256:${fp}`,
      manifest: { serial: `SN-${fp}`, b: 1, a: 2 },
      importedAt: T0,
      ...over,
    });

    it('creates, reports unchanged and updated, looks up by fingerprint, lists by rule', async () => {
      expect(await s.devices.put(dev('02'))).toBe('created');
      expect(await s.devices.put(dev('01', { rule: null }))).toBe('created');
      expect(await s.devices.put(dev('02', { manifest: { a: 2, b: 1, serial: 'SN-02' }, importedAt: T0 + 1 }))).toBe(
        'unchanged',
      );
      expect(await s.devices.put(dev('02', { ekPublicHash: 'sha256:ee', importedAt: T0 + 2 }))).toBe('updated');
      expect(await s.devices.getByFingerprint('sha256:02')).toMatchObject({
        serial: 'SN-02',
        ekPublicHash: 'sha256:ee',
        rule: 'factory',
        importedAt: T0 + 2,
      });
      expect(await s.devices.getByFingerprint('sha256:03')).toBeUndefined();
      expect((await s.devices.list()).map((d) => d.serial)).toEqual(['SN-01', 'SN-02']);
      expect((await s.devices.list({ rule: 'factory' })).map((d) => d.serial)).toEqual(['SN-02']);
    });
  });
}
