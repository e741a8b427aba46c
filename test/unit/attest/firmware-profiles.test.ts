/**
 * attest/firmware/profiles.ts: firmware profiles are owned by an object (one per issuer), not by
 * module state — two issuers in one process may judge boots against two directories.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FirmwareProfiles } from '../../../src/attest/firmware/index.js';

const SHIPPED = resolve(import.meta.dirname, '..', '..', '..', 'firmware-profiles');
const tmp = mkdtempSync(join(tmpdir(), 'sigil-fwp-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const profile = (name: string): string => `name: ${name}\npcr_bank: sha256\npcrs:\n  "7": ["${'ab'.repeat(32)}"]\n`;

describe('FirmwareProfiles', () => {
  it('each object reads its own directory', () => {
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    cpSync(SHIPPED, a, { recursive: true });
    cpSync(SHIPPED, b, { recursive: true });
    writeFileSync(join(b, 'only-b.yaml'), profile('only-b'));
    const pa = new FirmwareProfiles(a);
    const pb = new FirmwareProfiles(b);
    expect(pb.resolve(['only-b'], 'r')[0]!.name).toBe('only-b');
    expect(() => pa.resolve(['only-b'], 'racks')).toThrow(
      expect.objectContaining({
        code: 'firmware_profile_unknown',
        message: expect.stringMatching(/join_rule racks names firmware profile "only-b", which is not in .*\/a/),
      }),
    );
    expect(pa.dir).toBe(a);
  });

  it("without a directory: $SIGIL_FIRMWARE_PROFILES_DIR, else the installation's firmware-profiles/", () => {
    const saved = process.env.SIGIL_FIRMWARE_PROFILES_DIR;
    try {
      delete process.env.SIGIL_FIRMWARE_PROFILES_DIR;
      const p = new FirmwareProfiles();
      expect(resolve(p.dir)).toBe(SHIPPED);
      expect(p.resolve(['lab-gateway-v1'], 'r')[0]!.name).toBe('lab-gateway-v1');
      process.env.SIGIL_FIRMWARE_PROFILES_DIR = join(tmp, 'b');
      expect(p.dir).toBe(join(tmp, 'b'));
      expect(new FirmwareProfiles(join(tmp, 'a')).dir).toBe(join(tmp, 'a')); // an explicit directory wins
    } finally {
      if (saved === undefined) delete process.env.SIGIL_FIRMWARE_PROFILES_DIR;
      else process.env.SIGIL_FIRMWARE_PROFILES_DIR = saved;
    }
  });

  it('picks up a new profile without a restart (after the once-a-second look)', () => {
    const dir = join(tmp, 'c');
    cpSync(SHIPPED, dir, { recursive: true });
    let now = 1_000_000;
    const p = new FirmwareProfiles(dir, { now: () => now });
    expect(() => p.resolve(['late'], 'r')).toThrow(expect.objectContaining({ code: 'firmware_profile_unknown' }));
    writeFileSync(join(dir, 'late.yaml'), profile('late'));
    now += 1_000;
    expect(p.resolve(['late'], 'r')[0]!.name).toBe('late');
  });

  it('a broken directory is firmware_profile_unknown (retryable), naming the problem', () => {
    const dir = join(tmp, 'd');
    cpSync(SHIPPED, dir, { recursive: true });
    writeFileSync(join(dir, 'broken.yaml'), 'name: broken\n');
    expect(() => new FirmwareProfiles(dir).resolve(['lab-gateway-v1'], 'r')).toThrow(
      expect.objectContaining({
        code: 'firmware_profile_unknown',
        message: expect.stringMatching(/do not load: .*broken\.yaml/),
      }),
    );
    expect(() => new FirmwareProfiles(join(tmp, 'missing')).resolve([], 'r')).toThrow(
      expect.objectContaining({ code: 'firmware_profile_unknown' }),
    );
  });
});
