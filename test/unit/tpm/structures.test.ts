import { describe, expect, it } from 'vitest';
import { createHash, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TPM_ALG, TPM_ECC_CURVE, TPM_GENERATED_VALUE, TPM_ST } from '../../../src/tpm/constants.js';
import { ekPolicyA, ekPolicyB } from '../../../src/tpm/crypto/policy.js';
import { eccSignatureToDer, eccSignatureToP1363, verifyTpmSignature } from '../../../src/tpm/crypto/signature.js';
import { handleName, objectName } from '../../../src/tpm/name.js';
import { tpm2bAttest, tpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal, unmarshal } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject, publicKeyObject, publicKeySpki } from '../../../src/tpm/structures/keys.js';
import { describeSelection, pcrSelection, tpmlPcrSelection } from '../../../src/tpm/structures/pcr.js';
import { tpm2bPublic, tpmtPublic } from '../../../src/tpm/structures/public.js';
import { isEccSignature, tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { ekTemplateRsa2048, srkTemplateEccP256 } from '../../../src/tpm/templates.js';

const cap = JSON.parse(readFileSync(new URL('./fixtures/swtpm-captures.json', import.meta.url), 'utf8'));
const h = (s: string): Buffer => Buffer.from(s, 'hex');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('TPMT_PUBLIC / TPM2B_PUBLIC from swtpm and tpm2-tools bytes', () => {
  for (const which of ['rsaEk', 'eccP384Ek', 'toolsEccPrimary', 'ak'] as const) {
    it(`${which}: parses, keeps exact bytes, re-encodes identically, Name as tpm2_readpublic prints`, () => {
      const pub = unmarshal(tpm2bPublic, h(cap[which].tpm2bPublic));
      expect(hex(marshal(tpmtPublic, pub.value))).toBe(hex(pub.bytes));
      expect(hex(objectName(pub))).toBe(cap[which].name);
      expect(hex(objectName(pub.value))).toBe(cap[which].name);
    });
  }

  it('the RSA EK is template L-1 and converts to a 2048-bit SPKI', () => {
    const pub = unmarshal(tpm2bPublic, h(cap.rsaEk.tpm2bPublic)).value;
    if (pub.type !== TPM_ALG.RSA) throw new Error('not RSA');
    expect(pub.parameters).toEqual(ekTemplateRsa2048().parameters);
    expect(hex(pub.authPolicy)).toBe(hex(ekPolicyA(TPM_ALG.SHA256)));
    expect(publicKeyObject(pub).asymmetricKeyDetails).toMatchObject({ modulusLength: 2048, publicExponent: 65537n });
  });

  it('the P-384 EK carries PolicyB and converts to a P-384 key', () => {
    const pub = unmarshal(tpm2bPublic, h(cap.eccP384Ek.tpm2bPublic)).value;
    if (pub.type !== TPM_ALG.ECC) throw new Error('not ECC');
    expect(pub.parameters.curveId).toBe(TPM_ECC_CURVE.NIST_P384);
    expect(hex(pub.authPolicy)).toBe(hex(ekPolicyB(TPM_ALG.SHA384)));
    expect(hex(pub.authPolicy)).toBe(
      'b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12',
    );
    expect(publicKeyObject(pub).asymmetricKeyDetails).toMatchObject({ namedCurve: 'secp384r1' });
  });

  it('SRK template bytes are tpm2-openssl primaryEccTemplate', () => {
    expect(hex(marshal(tpmtPublic, srkTemplateEccP256()))).toBe(
      '0023000b0003047200000006008000430010000300100000' + '0000',
    );
  });

  it('KeyObject → TPMT_PUBLIC → SPKI round trip (EC P-256, P-384, RSA)', () => {
    for (const kp of [
      generateKeyPairSync('ec', { namedCurve: 'P-256' }),
      generateKeyPairSync('ec', { namedCurve: 'P-384' }),
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
    ]) {
      const spki = kp.publicKey.export({ type: 'spki', format: 'der' });
      const pub = publicFromKeyObject(kp.publicKey);
      expect(hex(publicKeySpki(pub))).toBe(hex(spki));
      expect(hex(publicKeySpki(unmarshal(tpmtPublic, marshal(tpmtPublic, pub))))).toBe(hex(spki));
    }
  });

  it('rejects an unknown key type and trailing bytes', () => {
    expect(() => unmarshal(tpmtPublic, h('0099000b000000000000'))).toThrow(/unsupported public key type 0x99/);
    expect(() => unmarshal(tpm2bPublic, h(cap.ak.tpm2bPublic + '00'))).toThrow(/trailing/);
  });
});

describe('TPMS_ATTEST captured from swtpm', () => {
  const akPub = unmarshal(tpm2bPublic, h(cap.ak.tpm2bPublic)).value;

  it('quote: magic, nonce, PCR selection and digest; the AK signature verifies offline', () => {
    const attest = unmarshal(tpmsAttest, h(cap.quote.attest));
    expect(attest.magic).toBe(TPM_GENERATED_VALUE);
    expect(hex(attest.extraData)).toBe(cap.quote.nonce);
    if (attest.type !== TPM_ST.ATTEST_QUOTE) throw new Error('not a quote');
    expect(describeSelection(attest.attested.pcrSelect)).toEqual([
      { hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] },
    ]);
    const digest = createHash('sha256');
    for (const p of cap.quote.pcrs as string[]) digest.update(h(p));
    expect(hex(attest.attested.pcrDigest)).toBe(digest.digest('hex'));
    const sig = unmarshal(tpmtSignature, h(cap.quote.signature));
    expect(verifyTpmSignature(akPub, h(cap.quote.attest), sig)).toBe(true);
    expect(hex(marshal(tpmsAttest, attest))).toBe(cap.quote.attest);
    // TPM2B_ATTEST keeps the exact bytes the signature covers
    const sized = unmarshal(
      tpm2bAttest,
      Buffer.concat([Buffer.from([0, h(cap.quote.attest).length]), h(cap.quote.attest)]),
    );
    expect(hex(sized.bytes)).toBe(cap.quote.attest);
  });

  it('certify: names the certified key; the signature verifies; DER and P1363 forms work with node', () => {
    const attest = unmarshal(tpmsAttest, h(cap.certify.attest));
    if (attest.type !== TPM_ST.ATTEST_CERTIFY) throw new Error('not a certify');
    expect(hex(attest.attested.name)).toBe(cap.certify.objectName);
    const sig = unmarshal(tpmtSignature, h(cap.certify.signature));
    if (!isEccSignature(sig)) throw new Error('not ECDSA');
    const key = createPublicKey({ key: publicKeySpki(akPub), format: 'der', type: 'spki' });
    expect(nodeVerify('sha256', h(cap.certify.attest), key, eccSignatureToDer(sig))).toBe(true);
    expect(
      nodeVerify('sha256', h(cap.certify.attest), { key, dsaEncoding: 'ieee-p1363' }, eccSignatureToP1363(sig, 32)),
    ).toBe(true);
  });

  it('refuses a structure that does not start with TPM_GENERATED_VALUE', () => {
    const forged = h(cap.quote.attest);
    forged[0] = 0;
    expect(() => unmarshal(tpmsAttest, forged)).toThrow(/not TPM_GENERATED_VALUE/);
  });
});

describe('signatures, selections, names', () => {
  it('ECDSA DER encoding handles high bits and short integers (verified by node)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 20; i++) {
      const p1363 = nodeSign('sha256', Buffer.from([i]), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const sig = {
        sigAlg: TPM_ALG.ECDSA,
        hash: TPM_ALG.SHA256,
        r: p1363.subarray(0, 32),
        s: p1363.subarray(32),
      } as const;
      expect(nodeVerify('sha256', Buffer.from([i]), publicKey, eccSignatureToDer(sig))).toBe(true);
      const round = unmarshal(tpmtSignature, marshal(tpmtSignature, sig));
      expect(verifyTpmSignature(publicFromKeyObject(publicKey), Buffer.from([i]), round)).toBe(true);
    }
  });

  it('pcrSelection builds 3-byte bitmaps', () => {
    const sel = pcrSelection({ hash: TPM_ALG.SHA256, pcrs: [0, 7, 16, 23] }, { hash: TPM_ALG.SHA1, pcrs: [] });
    expect(hex(marshal(tpmlPcrSelection, sel))).toBe('00000002000b03810081' + '0004030000' + '00');
  });

  it('permanent handles are named by their handle', () => {
    expect(hex(handleName(0x4000000b))).toBe('4000000b');
  });
});
