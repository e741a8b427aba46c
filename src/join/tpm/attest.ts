/**
 * The issuer's checks on the attestation key, the identity key, the quote and the
 * certification, each with the code that names it. Pure functions over src/tpm's codecs: the
 * join (server.ts) and the renewal key attestation (key-attestation.ts) share them.
 *
 *   ak_attributes_invalid  AK: RSA/ECC, restricted | sign | fixedTPM | fixedParent |
 *                          sensitiveDataOrigin, not decrypt, SHA-256+ name. Restricted is what
 *                          makes its signatures mean something: such a key signs only digests
 *                          the TPM computed itself, never external data that starts with
 *                          TPM_GENERATED_VALUE (Part 1 §25.2.3), so a quote or certification
 *                          cannot be forged with it.
 *   key_not_tpm_resident   identity key: fixedTPM | fixedParent | sensitiveDataOrigin | sign,
 *                          SHA-256+ name (generated in the TPM, cannot be duplicated out)
 *   certify_key_mismatch   the identity key is not the CSR's key, or not the object certified
 *   quote_invalid          not a TPMS_ATTEST of type ATTEST_QUOTE, or another PCR selection
 *   quote_nonce_mismatch   extraData is not the issuer's nonce (a replayed or stale quote)
 *   quote_signature_invalid  the AK's signature over the exact TPMS_ATTEST bytes does not verify
 *   certify_invalid        not ATTEST_CERTIFY, not the expected qualifying data, or not signed by the AK
 */
import { SigilError, type ErrorCode } from '../../errors.js';
import { TPM_ALG, TPM_ST, TPMA_OBJECT } from '../../tpm/constants.js';
import { verifyTpmSignature } from '../../tpm/crypto/signature.js';
import { objectName } from '../../tpm/name.js';
import type { TpmsAttest, TpmsQuoteInfo } from '../../tpm/structures/attest.js';
import { publicKeyObject } from '../../tpm/structures/keys.js';
import { describeSelection } from '../../tpm/structures/pcr.js';
import type { Tpm2bPublic, TpmtPublic } from '../../tpm/structures/public.js';
import type { TpmtSignature } from '../../tpm/structures/signature.js';
import type { SignedAttest } from './structures.js';
import { bankName, type PcrSelectionWire } from './wire.js';

const STRONG_HASHES: ReadonlySet<number> = new Set([TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512]);

const ATTR_NAMES: ReadonlyArray<[number, string]> = [
  [TPMA_OBJECT.fixedTPM, 'fixedTPM'],
  [TPMA_OBJECT.fixedParent, 'fixedParent'],
  [TPMA_OBJECT.sensitiveDataOrigin, 'sensitiveDataOrigin'],
  [TPMA_OBJECT.restricted, 'restricted'],
  [TPMA_OBJECT.sign, 'sign'],
];

function missing(pub: TpmtPublic, required: number): string[] {
  return ATTR_NAMES.filter(([bit]) => (required & bit) !== 0 && (pub.objectAttributes & bit) === 0).map(([, n]) => n);
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const attrHex = (p: TpmtPublic): string => `0x${p.objectAttributes.toString(16).padStart(8, '0')}`;

export const AK_ATTRIBUTES = TPMA_OBJECT.restricted | TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin;
export const KEY_ATTRIBUTES = TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin;

export function checkAk(ak: Tpm2bPublic): void {
  const v = ak.value;
  const fail = (why: string): never => {
    throw new SigilError('ak_attributes_invalid', `the attestation key (attributes ${attrHex(v)}) ${why}`);
  };
  if (v.type !== TPM_ALG.ECC && v.type !== TPM_ALG.RSA) fail('is neither an ECC nor an RSA key');
  const lacking = missing(v, AK_ATTRIBUTES);
  if (lacking.length > 0) fail(`lacks ${lacking.join(', ')}: it must be a restricted signing key generated in and bound to the TPM`);
  if ((v.objectAttributes & TPMA_OBJECT.decrypt) !== 0) fail('has decrypt set: an attestation key must only sign');
  if (!STRONG_HASHES.has(v.nameAlg)) fail(`has name algorithm 0x${v.nameAlg.toString(16)}; SHA-256, SHA-384 or SHA-512 is required`);
  try {
    publicKeyObject(v);
  } catch (err) {
    fail(`has no usable public key: ${(err as Error).message}`);
  }
}

/** The identity key must be TPM-resident and be the key of the CSR. */
export function checkIdentityKey(key: Tpm2bPublic, csrSpki: Buffer): void {
  const v = key.value;
  const lacking = missing(v, KEY_ATTRIBUTES);
  if (lacking.length > 0) {
    throw new SigilError('key_not_tpm_resident', `the identity key (attributes ${attrHex(v)}) lacks ${lacking.join(', ')}: it was not generated in the TPM or can be duplicated out of it (exportable)`);
  }
  if (!STRONG_HASHES.has(v.nameAlg)) {
    throw new SigilError('key_not_tpm_resident', `the identity key's Name uses algorithm 0x${v.nameAlg.toString(16)}; a certification over it proves nothing (SHA-256+ required)`);
  }
  let same = false;
  try {
    same = publicKeyObject(v).export({ type: 'spki', format: 'der' }).equals(csrSpki);
  } catch {
    same = false;
  }
  if (!same) throw new SigilError('certify_key_mismatch', 'the TPM identity key (key_public) is not the public key of the certificate request');
}

function signedBy(ak: TpmtPublic, a: SignedAttest): boolean {
  const sig = a.signature as TpmtSignature & { hash?: number };
  if (sig.hash === undefined || !STRONG_HASHES.has(sig.hash)) return false;
  try {
    return verifyTpmSignature(ak, a.attest.bytes, a.signature);
  } catch {
    return false; // an algorithm the AK cannot have made
  }
}

function sameSelection(got: PcrSelectionWire, want: PcrSelectionWire): boolean {
  const norm = (s: PcrSelectionWire): string =>
    s
      .filter((b) => b.pcrs.length > 0)
      .map((b) => `${b.bank}:${[...new Set(b.pcrs)].sort((x, y) => x - y).join(',')}`)
      .sort()
      .join(' ');
  return norm(got) === norm(want);
}

export function selectionText(s: PcrSelectionWire): string {
  return s.map((b) => `${b.bank}:${b.pcrs.join(',')}`).join(' ');
}

/** Verify a quote: type, nonce, signature by the AK, selection. Returns its quote info. */
export function verifyQuote(q: SignedAttest, ak: Tpm2bPublic, nonce: Buffer, selection: PcrSelectionWire): TpmsAttest & { attested: TpmsQuoteInfo } {
  const a = q.attest.value;
  if (a.type !== TPM_ST.ATTEST_QUOTE) throw new SigilError('quote_invalid', `the quote is an attestation of type 0x${a.type.toString(16)}, not TPM_ST_ATTEST_QUOTE`);
  if (!nonce.equals(Buffer.from(a.extraData))) {
    throw new SigilError('quote_nonce_mismatch', `the quote's qualifying data (${hex(a.extraData).slice(0, 16)}…) is not this challenge's nonce: a replayed or stale quote`);
  }
  if (!signedBy(ak.value, q)) throw new SigilError('quote_signature_invalid', 'the quote signature does not verify with the attestation key (signed by another key, or altered)');
  const got = describeSelection(a.attested.pcrSelect).map((b) => ({ bank: bankName(b.hash) ?? (`0x${b.hash.toString(16)}` as never), pcrs: [...b.pcrs] }));
  if (!sameSelection(got, selection)) {
    throw new SigilError('quote_invalid', `the quote covers ${selectionText(got) || 'no PCRs'}, the issuer asked for ${selectionText(selection)} (is that PCR bank allocated in this TPM?)`);
  }
  return a as TpmsAttest & { attested: TpmsQuoteInfo };
}

/** The hash a quote's PCR digest uses: the signing scheme's (Part 3 §18.4). */
export function quoteHashAlg(q: SignedAttest): number {
  return (q.signature as { hash: number }).hash;
}

/**
 * Verify a TPM2_Certify of `key` by the AK with `qualifyingData`. `what` names it in messages
 * ("certification", "renewal key attestation").
 */
export function verifyCertify(c: SignedAttest, ak: Tpm2bPublic, key: Tpm2bPublic, qualifyingData: Buffer, what = 'certification'): TpmsAttest {
  const a = c.attest.value;
  const fail = (code: ErrorCode, why: string): never => {
    throw new SigilError(code, `the ${what} of the identity key ${why}`);
  };
  if (a.type !== TPM_ST.ATTEST_CERTIFY) fail('certify_invalid', `is an attestation of type 0x${a.type.toString(16)}, not TPM_ST_ATTEST_CERTIFY`);
  if (!qualifyingData.equals(Buffer.from(a.extraData))) fail('certify_invalid', 'does not carry the expected qualifying data (stale or made for another request)');
  if (!signedBy(ak.value, c)) fail('certify_invalid', 'is not signed by the attestation key');
  if (a.type === TPM_ST.ATTEST_CERTIFY && !Buffer.from(a.attested.name).equals(Buffer.from(objectName(key)))) {
    fail('certify_key_mismatch', 'names another TPM object than key_public');
  }
  return a;
}
