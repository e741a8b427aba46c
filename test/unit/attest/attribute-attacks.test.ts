/**
 * Attack: a TPM object that looks like an attestation key or an identity key but lacks ONE of the
 * attributes that make its evidence mean something (Part 1 §27.2, Part 2 §8.3):
 *   fixedTPM             cannot be duplicated to another TPM (or to software)
 *   fixedParent          cannot be re-parented (and then duplicated)
 *   sensitiveDataOrigin  the TPM generated the private part; nobody imported a known key
 *   restricted, sign     (AK only) signs TPM-made digests only, so quotes cannot be forged
 *   not decrypt          (AK only) a key that also decrypts can be made to sign chosen data
 * Each bit is cleared alone, so deleting any single check (or dropping the bit from
 * AK_ATTRIBUTES / KEY_ATTRIBUTES / ATTR_NAMES) makes exactly that case pass. A real TPM refuses to
 * create some of these combinations (fixedParent clear with fixedTPM set; restricted sign+decrypt),
 * but the public area is what the agent SENDS, so a hostile agent can send any bits: the checks
 * must hold on their own. The swtpm runs of these attacks are test/integration/tpm-join-forgeries.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkAk } from '../../../src/attest/ak.js';
import { checkIdentityKey } from '../../../src/attest/key.js';
import { identityKeyTemplate } from '../../../src/keystore/tpm.js';
import { TPM_ALG, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type Tpm2bPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { akTemplateEccP256 } from '../../../src/tpm/templates.js';

const akKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const idKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const csrSpki = idKey.export({ type: 'spki', format: 'der' });

function area(template: TpmtPublic, attributes: number, key = akKey): Tpm2bPublic {
  return toSized(tpmtPublic, {
    ...template,
    objectAttributes: attributes,
    unique: publicFromKeyObject(key).unique,
  } as TpmtPublic);
}

const refused = (code: string, message: RegExp) =>
  expect.objectContaining({ code, message: expect.stringMatching(message) });

describe('attack: an attestation key missing one attribute (ak_attributes_invalid)', () => {
  const t = akTemplateEccP256();

  it('a genuine AK template passes (the baseline every case below differs from by one bit)', () => {
    expect(() => checkAk(area(t, t.objectAttributes))).not.toThrow();
  });

  it.each([
    ['fixedTPM', TPMA_OBJECT.fixedTPM],
    ['fixedParent', TPMA_OBJECT.fixedParent],
    ['sensitiveDataOrigin', TPMA_OBJECT.sensitiveDataOrigin],
    ['restricted', TPMA_OBJECT.restricted],
    ['sign', TPMA_OBJECT.sign],
  ])('an AK without %s is refused, naming that attribute alone', (name, bit) => {
    expect(() => checkAk(area(t, t.objectAttributes & ~bit))).toThrow(
      refused('ak_attributes_invalid', new RegExp(`lacks ${name}: it must be`)),
    );
  });

  it('an AK that can also decrypt is refused (has decrypt set)', () => {
    expect(() => checkAk(area(t, t.objectAttributes | TPMA_OBJECT.decrypt))).toThrow(
      refused('ak_attributes_invalid', /has decrypt set/),
    );
  });
});

describe('attack: an object that is not an asymmetric key at all', () => {
  // A keyed-hash (HMAC) object with every attestation-key attribute: its "signatures" are MACs
  // anyone holding the key could make, so it may never stand in for an AK (or an EK).
  const hmacAk = toSized(tpmtPublic, {
    type: TPM_ALG.KEYEDHASH,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: akTemplateEccP256().objectAttributes,
    authPolicy: Buffer.alloc(0),
    parameters: { scheme: { scheme: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA256 } },
    unique: Buffer.alloc(32, 1),
  } as TpmtPublic);

  it('a keyed-hash object with every AK attribute is ak_attributes_invalid', () => {
    expect(() => checkAk(hmacAk)).toThrow(refused('ak_attributes_invalid', /neither an ECC nor an RSA key/));
  });

  it('a keyed-hash object with every identity-key attribute is not the key of the CSR: certify_key_mismatch', () => {
    // Its "public key" cannot be compared with the CSR's at all: that must refuse, not pass.
    expect(() => checkIdentityKey(hmacAk, csrSpki)).toThrow(refused('certify_key_mismatch', /not the public key/));
  });
});

describe('attack: an identity key whose Name is a SHA-1 digest', () => {
  it('is key_not_tpm_resident: a certification over a SHA-1 Name proves nothing', () => {
    const t = identityKeyTemplate();
    const sha1 = toSized(tpmtPublic, {
      ...t,
      nameAlg: TPM_ALG.SHA1,
      unique: publicFromKeyObject(idKey).unique,
    } as TpmtPublic);
    expect(() => checkIdentityKey(sha1, csrSpki)).toThrow(refused('key_not_tpm_resident', /Name uses algorithm 0x4/));
  });
});

describe('attack: an identity key missing one attribute (key_not_tpm_resident)', () => {
  const t = identityKeyTemplate();

  it('a genuine identity key template passes', () => {
    expect(() => checkIdentityKey(area(t, t.objectAttributes, idKey), csrSpki)).not.toThrow();
  });

  it.each([
    ['fixedTPM', TPMA_OBJECT.fixedTPM],
    ['fixedParent', TPMA_OBJECT.fixedParent],
    ['sensitiveDataOrigin', TPMA_OBJECT.sensitiveDataOrigin],
    ['sign', TPMA_OBJECT.sign],
  ])('an identity key without %s is refused, naming that attribute alone', (name, bit) => {
    expect(() => checkIdentityKey(area(t, t.objectAttributes & ~bit, idKey), csrSpki)).toThrow(
      refused('key_not_tpm_resident', new RegExp(`lacks ${name}: it was not generated`)),
    );
  });
});
