import { describe, expect, it } from 'vitest';
import { validateJoinRule as validateRuleBlock } from '../../../src/join/server-methods.js';
import { selectionFor } from '../../../src/attest/firmware/index.js';
import { tpmMachineId } from '../../../src/join/tpm/server.js';
import '../../../src/join/tpm/rule.js';
import { parseFirmwareProfile } from '../../../src/attest/firmware/index.js';

const HASH = `sha256:${'ab'.repeat(32)}`;

describe('tpm join rule', () => {
  it('accepts ek_ca_files, allow, or both, with firmware profiles', () => {
    expect(
      validateRuleBlock('r', {
        method: 'tpm',
        bot: 'gw',
        tpm: { ek_ca_files: ['/etc/ca.pem'], firmware_profiles: ['lab-gateway-v1'] },
      }),
    ).toMatchObject({ ek_ca_files: ['/etc/ca.pem'] });
    expect(
      validateRuleBlock('r', {
        method: 'tpm',
        bot: 'gw',
        tpm: { allow: [{ ek_public_hash: HASH.toUpperCase().replace('SHA256', 'sha256') }] },
      }),
    ).toEqual({ allow: [{ ek_public_hash: HASH }] });
  });

  it('refuses a rule that would trust any TPM, a malformed hash, a relative path, an unknown key', () => {
    const bad = [
      { firmware_profiles: ['lab-gateway-v1'] },
      { allow: [{ ek_public_hash: 'sha1:abcd' }] },
      { allow: [] },
      { ek_ca_files: ['ca.pem'] },
      { ek_ca_files: ['/ca.pem'], require_ek_cert: true },
      { ek_ca_files: ['/ca.pem'], firmware_profiles: ['Bad Name'] },
    ];
    for (const tpm of bad)
      expect(() => validateRuleBlock('r', { method: 'tpm', bot: 'gw', tpm }), JSON.stringify(tpm)).toThrow(
        expect.objectContaining({ code: 'policy_invalid' }),
      );
  });

  it('takes ek_crl_files only with ek_ca_files: an EK trusted by hash alone has no certificate to revoke', () => {
    expect(
      validateRuleBlock('r', {
        method: 'tpm',
        bot: 'gw',
        tpm: { ek_ca_files: ['/etc/ca.pem'], ek_crl_files: ['/etc/ek.crl'] },
      }),
    ).toMatchObject({ ek_crl_files: ['/etc/ek.crl'] });
    for (const tpm of [
      { ek_crl_files: ['/etc/ek.crl'] },
      { ek_crl_files: ['/etc/ek.crl'], allow: [{ ek_public_hash: HASH }] },
    ]) {
      expect(() => validateRuleBlock('r', { method: 'tpm', bot: 'gw', tpm }), JSON.stringify(tpm)).toThrow(
        expect.objectContaining({
          code: 'policy_invalid',
          message: expect.stringMatching(/ek_crl_files: ek_crl_files needs ek_ca_files/),
        }),
      );
    }
    for (const ek_crl_files of [[], ['ek.crl']]) {
      expect(() =>
        validateRuleBlock('r', { method: 'tpm', bot: 'gw', tpm: { ek_ca_files: ['/etc/ca.pem'], ek_crl_files } }),
      ).toThrow(expect.objectContaining({ code: 'policy_invalid' }));
    }
  });

  it('machine ids are tpm- and 128 bits of the EK hash (fits a certificate CN)', () => {
    expect(tpmMachineId(HASH)).toBe(`tpm-${'ab'.repeat(16)}`);
  });
});

describe('PCR selection from firmware profiles', () => {
  const profile = (yaml: string) => parseFirmwareProfile(yaml, 'test.yaml');
  it('quotes pinned PCRs and the PCRs the event-log rules read, per bank', () => {
    const pinned = profile(
      `name: a\npcr_bank: sha256\npcrs:\n  "0": ["${'00'.repeat(32)}"]\n  "7": ["${'00'.repeat(32)}"]\n`,
    );
    const rules = profile(
      `name: b\npcr_bank: sha256\nevent_log:\n  rules:\n    secure_boot: enabled\n    boot_loader_digests: ["${'11'.repeat(32)}"]\n    kernel_cmdline_contains: ["ro"]\n`,
    );
    const sha1 = profile(`name: c\npcr_bank: sha1\npcrs:\n  "2": ["${'00'.repeat(20)}"]\n`);
    expect(selectionFor([pinned, rules, sha1])).toEqual([
      { bank: 'sha256', pcrs: [0, 4, 7, 8, 12] },
      { bank: 'sha1', pcrs: [2] },
    ]);
    expect(selectionFor([])).toEqual([{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]);
  });
});
