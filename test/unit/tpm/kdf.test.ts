import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { kdfa } from '../../../src/tpm/crypto/kdfa.js';
import { kdfe } from '../../../src/tpm/crypto/kdfe.js';

const vectors = JSON.parse(readFileSync(new URL('./fixtures/kdf-vectors.json', import.meta.url), 'utf8'));
const h = (s: string): Buffer => Buffer.from(s, 'hex');
const ALGS: Record<string, number> = {
  sha1: TPM_ALG.SHA1,
  sha256: TPM_ALG.SHA256,
  sha384: TPM_ALG.SHA384,
  sha512: TPM_ALG.SHA512,
};

describe('KDFa (Part 1 §11.4.10.2)', () => {
  const v = vectors.kdfa;
  for (const [name, expected] of Object.entries(v.results as Record<string, string>)) {
    it(`matches the reference self-test vector for ${name}`, () => {
      const out = kdfa(ALGS[name]!, h(v.key), v.label, h(v.contextU), h(v.contextV), v.bits);
      expect(out.toString('hex')).toBe(expected);
    });
  }

  it('takes a label with or without its terminating zero', () => {
    const a = kdfa(TPM_ALG.SHA256, h(v.key), 'KDFSELFTESTLABEL', h(v.contextU), h(v.contextV), 160);
    const b = kdfa(TPM_ALG.SHA256, h(v.key), Buffer.from('KDFSELFTESTLABEL\0'), h(v.contextU), h(v.contextV), 160);
    expect(a.equals(b)).toBe(true);
  });

  it('spans several HMAC blocks and masks a partial first byte', () => {
    const long = kdfa(TPM_ALG.SHA256, h('01'), 'ATH', h('02'), h('03'), 700);
    expect(long.length).toBe(88);
    expect(long[0]! >> 4).toBe(0);
  });
});

describe('KDFe (Part 1 §11.4.10.3)', () => {
  for (const v of vectors.kdfe.vectors as {
    name: string;
    hashAlg: number;
    z: string;
    use: string;
    partyU: string;
    partyV: string;
    bits: number;
    result: string;
  }[]) {
    it(`vector ${v.name}`, () => {
      expect(kdfe(v.hashAlg, h(v.z), v.use, h(v.partyU), h(v.partyV), v.bits).toString('hex')).toBe(v.result);
    });
  }
});
