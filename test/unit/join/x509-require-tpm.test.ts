/** x509 rules with `require_tpm` at apply time, and the agent config forms of a TPM device key. */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { x509AgentConfigSchema } from '../../../src/join/x509/config.js';
import { parseResources } from '../../../src/server/policy/resources.js';

const rule = (x509: string): string =>
  `kind: join_rule\nname: factory\nspec:\n  method: x509\n  bot: gw\n  x509:\n    ca_files: [/etc/sigil/factory-ca.pem]\n${x509}`;

function refusal(fn: () => unknown): SigilError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SigilError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('require_tpm', () => {
  it('accepts EK trust by CA files, by allow list, or through the manifest of a registered_only rule', () => {
    expect(parseResources(rule('    require_tpm: { ek_ca_files: [/etc/sigil/tpm-ca.pem] }\n'))).toHaveLength(1);
    expect(
      parseResources(rule(`    require_tpm: { allow: [ { ek_public_hash: "SHA256:${'AB'.repeat(32)}" } ] }\n`)),
    ).toHaveLength(1);
    expect(parseResources(rule('    registered_only: true\n    require_tpm: {}\n'))).toHaveLength(1);
    expect(
      parseResources(
        rule('    require_tpm: { ek_ca_files: [/etc/sigil/tpm-ca.pem], ek_crl_files: [/etc/sigil/tpm-ca.crl] }\n'),
      ),
    ).toHaveLength(1);
  });

  it('refuses a require_tpm that any TPM (even a software one) would pass, and what tpm rules refuse', () => {
    const cases: Array<[string, RegExp]> = [
      ['    require_tpm: {}\n', /require_tpm needs ek_ca_files, allow, or registered_only: true/],
      ['    require_tpm: { ek_ca_files: [tpm-ca.pem] }\n', /absolute/],
      ['    require_tpm: { allow: [] }\n', /empty allow list admits nobody/],
      ['    require_tpm: { allow: [ { ek_public_hash: "abc" } ] }\n', /ek_public_hash must be sha256:/],
      ['    require_tpm: { ek_ca_files: [/ca.pem], firmware_profiles: [lab] }\n', /firmware_profiles|Unrecognized/i],
      [
        `    require_tpm: { ek_crl_files: [/ek.crl], allow: [ { ek_public_hash: "sha256:${'ab'.repeat(32)}" } ] }\n`,
        /require_tpm.ek_crl_files: ek_crl_files needs ek_ca_files/,
      ],
      ['    registered_only: true\n    require_tpm: { ek_crl_files: [/ek.crl] }\n', /ek_crl_files needs ek_ca_files/],
    ];
    for (const [block, re] of cases) {
      const e = refusal(() => parseResources(rule(block)));
      expect(e.code).toBe('policy_invalid');
      expect(e.message).toMatch(re);
    }
  });
});

describe('agent config: a device key in the TPM', () => {
  it('takes key_uri "tpm:…" or a tpm block, exactly one key source', () => {
    expect(
      x509AgentConfigSchema().safeParse({ cert: '/c.pem', key_uri: 'tpm:handle=0x81000100;tcti=device:/dev/tpmrm0' })
        .success,
    ).toBe(true);
    expect(
      x509AgentConfigSchema().safeParse({
        cert: '/c.pem',
        tpm: { handle: '0x81000100', ek: 'ecc-p384', attest: false },
      }).success,
    ).toBe(true);
    expect(
      x509AgentConfigSchema().safeParse({ cert: '/c.pem', tpm: { handle: 0x81000100 }, key: '/k.pem' }).success,
    ).toBe(false);
    expect(
      x509AgentConfigSchema().safeParse({ cert: '/c.pem', tpm: { handle: 0x81000100, ek: 'rsa-4096' } }).success,
    ).toBe(false);
    expect(x509AgentConfigSchema().safeParse({ cert: '/c.pem' }).success).toBe(false);
  });
});
