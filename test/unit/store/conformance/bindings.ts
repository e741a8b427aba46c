/** Conformance: first-join key bindings (aws_iid) and the token (jti) replay cache. */
import { beforeEach, describe, expect, it } from 'vitest';
import type { KeyBindingRecord, Stores } from '../../../../src/server/store/types.js';
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
    it('the first bind wins; a later one with another key returns the binding in force', () => {
      expect(s.keyBindings.get('aws_iid', 'i-1')).toBeUndefined();
      expect(s.keyBindings.bind(binding('i-1', 'a'))).toEqual(binding('i-1', 'a'));
      expect(s.keyBindings.bind(binding('i-1', 'b', { createdAt: T0 + MIN }))).toEqual(binding('i-1', 'a'));
      expect(s.keyBindings.get('aws_iid', 'i-1')!.keyHash).toBe(binding('i-1', 'a').keyHash);
    });

    it('keeps methods apart, lists in order, resets', () => {
      s.keyBindings.bind(binding('i-2', 'a'));
      s.keyBindings.bind(binding('i-1', 'a'));
      s.keyBindings.bind(binding('i-1', 'c', { method: 'other' }));
      expect(s.keyBindings.list({ method: 'aws_iid' }).map((b) => b.subject)).toEqual(['i-1', 'i-2']);
      expect(s.keyBindings.list().map((b) => `${b.method}/${b.subject}`)).toEqual(['aws_iid/i-1', 'aws_iid/i-2', 'other/i-1']);
      expect(s.keyBindings.reset('aws_iid', 'i-1')).toBe(true);
      expect(s.keyBindings.reset('aws_iid', 'i-1')).toBe(false);
      expect(s.keyBindings.get('other', 'i-1')).toBeDefined();
      expect(s.keyBindings.bind(binding('i-1', 'b')).keyHash).toBe(binding('i-1', 'b').keyHash);
    });
  });

  describe('token replay cache', () => {
    it('records a (issuer, jti) once; other issuers are separate; expired rows are pruned', () => {
      expect(s.tokenReplay.seen('https://a', 'j1')).toBe(false);
      expect(s.tokenReplay.record('https://a', 'j1', T0 + 5 * MIN, T0)).toBe(true);
      expect(s.tokenReplay.record('https://a', 'j1', T0 + 5 * MIN, T0 + 1)).toBe(false);
      expect(s.tokenReplay.seen('https://a', 'j1')).toBe(true);
      expect(s.tokenReplay.record('https://b', 'j1', T0 + 5 * MIN, T0)).toBe(true);
      expect(s.tokenReplay.prune(T0 + 6 * MIN)).toBe(2);
      expect(s.tokenReplay.seen('https://a', 'j1')).toBe(false);
    });
  });
}
