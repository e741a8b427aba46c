/** Agent settings (agent/state/settings.ts): durable across reopen, first writer wins in getOrCreate. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAgentState } from '../../../src/agent/state/index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-settings-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('agent settings', () => {
  it('survive a reopen; getOrCreate keeps the first value', () => {
    const a = openAgentState(dir);
    expect(a.getSetting('mqtt.bootstrap_id')).toBeUndefined();
    const first = a.getOrCreateSetting('mqtt.bootstrap_id', () => 'abc');
    expect(first).toBe('abc');
    expect(a.getOrCreateSetting('mqtt.bootstrap_id', () => 'other')).toBe('abc');
    a.setSetting('join.used_credential', 'token:1');
    a.close();
    const b = openAgentState(dir);
    expect(b.getSetting('mqtt.bootstrap_id')).toBe('abc');
    expect(b.getSetting('join.used_credential')).toBe('token:1');
    b.setSetting('join.used_credential', 'token:2');
    expect(b.getSetting('join.used_credential')).toBe('token:2');
    b.close();
  });

  it('refuses malformed keys and oversized values (caller bugs)', () => {
    const s = openAgentState(dir);
    expect(() => s.setSetting('Bad Key', 'x')).toThrow(TypeError);
    expect(() => s.setSetting('ok', 'x'.repeat(5000))).toThrow(TypeError);
    s.close();
  });
});
