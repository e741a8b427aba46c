/**
 * attest/key-attestation.ts: renewal-time proof that a new key is TPM-resident (TPM2_Certify
 * by the instance's AK, Part 3 §18.2), on structures made in software the way a TPM makes them,
 * so each check can be broken alone. The swtpm end-to-end run is test/integration/tpm-join.test.ts.
 */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { renewalQualifyingData, verifyKeyAttestation } from '../../../src/attest/key-attestation.js';
import { encodePublic } from '../../../src/attest/structures.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { objectName } from '../../../src/tpm/name.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal, toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type Tpm2bPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { akTemplateEccP256, signingKeyTemplateEccP256 } from '../../../src/tpm/templates.js';

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const area = (template: TpmtPublic, key: KeyObject, attributes = template.objectAttributes): Tpm2bPublic =>
  toSized(tpmtPublic, {
    ...template,
    objectAttributes: attributes,
    unique: publicFromKeyObject(key).unique,
  } as TpmtPublic);

const ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const newKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const akPublic = area(akTemplateEccP256(), ak.publicKey);
const keyTemplate = signingKeyTemplateEccP256();
const csrSpki = newKey.publicKey.export({ type: 'spki', format: 'der' });
const REQUEST = 'req-0001';

function certifyOf(
  key: Tpm2bPublic,
  o: { qualifying?: Buffer; signer?: KeyObject; type?: number; sha1?: boolean } = {},
): { attest: string; signature: string } {
  const a = {
    magic: TPM_GENERATED_VALUE,
    type: o.type ?? TPM_ST.ATTEST_CERTIFY,
    qualifiedSigner: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]),
    extraData: o.qualifying ?? renewalQualifyingData(REQUEST),
    clockInfo: { clock: 1000n, resetCount: 1, restartCount: 0, safe: true },
    firmwareVersion: 1n,
    attested:
      o.type === TPM_ST.ATTEST_QUOTE
        ? { pcrSelect: [], pcrDigest: Buffer.alloc(32) }
        : { name: objectName(key), qualifiedName: Buffer.concat([Buffer.from([0, 0x0b]), randomBytes(32)]) },
  } as TpmsAttest;
  const bytes = Buffer.from(marshal(tpmsAttest, a));
  const rs = sign(o.sha1 ? 'sha1' : 'sha256', bytes, { key: o.signer ?? ak.privateKey, dsaEncoding: 'ieee-p1363' });
  return {
    attest: b64(bytes),
    signature: b64(
      marshal(tpmtSignature, {
        sigAlg: TPM_ALG.ECDSA,
        hash: o.sha1 ? TPM_ALG.SHA1 : TPM_ALG.SHA256,
        r: rs.subarray(0, 32),
        s: rs.subarray(32),
      }),
    ),
  };
}

const facts = { ak_public: encodePublic(akPublic) };

function verify(
  key: Tpm2bPublic,
  certify = certifyOf(key),
  o: { facts?: Record<string, unknown>; spki?: Buffer; request?: string } = {},
): void {
  verifyKeyAttestation(
    { key_public: encodePublic(key), certify },
    o.facts ?? facts,
    o.spki ?? csrSpki,
    o.request ?? REQUEST,
  );
}

const refused = (code: string, message?: RegExp) =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) } : {}) });

describe('verifyKeyAttestation', () => {
  const good = area(keyTemplate, newKey.publicKey);

  it('accepts a TPM2_Certify of the CSR key by the instance AK for this request', () => {
    expect(() => verify(good)).not.toThrow();
  });

  it.each([
    ['fixedTPM', TPMA_OBJECT.fixedTPM],
    ['fixedParent', TPMA_OBJECT.fixedParent],
    ['sensitiveDataOrigin', TPMA_OBJECT.sensitiveDataOrigin],
    ['sign', TPMA_OBJECT.sign],
  ])(
    'refuses a key without %s (not generated in, or duplicable out of, the TPM): key_not_tpm_resident',
    (name, bit) => {
      const weak = area(keyTemplate, newKey.publicKey, keyTemplate.objectAttributes & ~bit);
      expect(() => verify(weak)).toThrow(refused('key_not_tpm_resident', new RegExp(`lacks ${name}`)));
    },
  );

  it('refuses a certification made for another request (qualifying data): certify_invalid', () => {
    expect(() => verify(good, certifyOf(good, { qualifying: renewalQualifyingData('req-0002') }))).toThrow(
      refused('certify_invalid', /qualifying data/),
    );
  });

  it('refuses a certification not signed by the instance AK: certify_invalid', () => {
    expect(() => verify(good, certifyOf(good, { signer: other.privateKey }))).toThrow(
      refused('certify_invalid', /not signed by the attestation key/),
    );
    // Signed by the AK, but over a SHA-1 digest: a collision could pass off another structure.
    expect(() => verify(good, certifyOf(good, { sha1: true }))).toThrow(
      refused('certify_invalid', /not signed by the attestation key/),
    );
  });

  it('refuses an attestation that is not a certification: certify_invalid', () => {
    expect(() => verify(good, certifyOf(good, { type: TPM_ST.ATTEST_QUOTE }))).toThrow(
      refused('certify_invalid', /not TPM_ST_ATTEST_CERTIFY/),
    );
  });

  it('refuses a certification of another object, or a key that is not the CSR key: certify_key_mismatch', () => {
    const otherKey = area(keyTemplate, other.publicKey);
    expect(() => verify(good, certifyOf(otherKey))).toThrow(refused('certify_key_mismatch', /another TPM object/));
    expect(() => verify(otherKey, certifyOf(otherKey))).toThrow(
      refused('certify_key_mismatch', /not the public key of the certificate request/),
    );
  });

  it('refuses when the instance AK is not a restricted signing key, or the instance has none', () => {
    const loose = area(
      akTemplateEccP256(),
      ak.publicKey,
      akTemplateEccP256().objectAttributes & ~TPMA_OBJECT.restricted,
    );
    expect(() => verify(good, certifyOf(good), { facts: { ak_public: encodePublic(loose) } })).toThrow(
      refused('ak_attributes_invalid', /lacks restricted/),
    );
    const decrypting = area(
      akTemplateEccP256(),
      ak.publicKey,
      akTemplateEccP256().objectAttributes | TPMA_OBJECT.decrypt,
    );
    expect(() => verify(good, certifyOf(good), { facts: { ak_public: encodePublic(decrypting) } })).toThrow(
      refused('ak_attributes_invalid', /has decrypt set/),
    );
    const sha1Name = toSized(tpmtPublic, {
      ...akTemplateEccP256(),
      nameAlg: TPM_ALG.SHA1,
      unique: publicFromKeyObject(ak.publicKey).unique,
    } as TpmtPublic);
    expect(() => verify(good, certifyOf(good), { facts: { ak_public: encodePublic(sha1Name) } })).toThrow(
      refused('ak_attributes_invalid', /name algorithm 0x4/),
    );
    expect(() => verify(good, certifyOf(good), { facts: {} })).toThrow(
      refused('certify_invalid', /did not join with the tpm method/),
    );
  });

  it('refuses a malformed key_attestation: tpm_evidence_malformed', () => {
    expect(() => verifyKeyAttestation({ key_public: encodePublic(good) }, facts, csrSpki, REQUEST)).toThrow(
      refused('tpm_evidence_malformed'),
    );
  });
});
