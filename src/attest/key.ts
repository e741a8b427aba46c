/**
 * A key the issuer certifies as TPM-resident (the join's identity key, a renewal's new key, an
 * x509 DevID):
 *
 *   key_not_tpm_resident   fixedTPM | fixedParent | sensitiveDataOrigin | sign, SHA-256+ name:
 *                          generated in the TPM (sensitiveDataOrigin), cannot be duplicated out
 *                          of it (fixedTPM, fixedParent; Part 1 §27.2)
 *   certify_key_mismatch   it is not the public key of the certificate request
 *
 * The attributes prove something only together with a TPM2_Certify of this very object by the
 * AK (./certify.ts): the issuer then knows the TPM itself reported them.
 */
import { SigilError } from '../errors.js';
import { TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT } from '../tpm/constants.js';
import { padInt, publicKeyObject } from '../tpm/structures/keys.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';
import { attributesHex, missingAttributes, STRONG_HASHES } from './attributes.js';

export const KEY_ATTRIBUTES =
  TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin;

/** The identity key must be TPM-resident and be the key of the CSR (`csrSpki`, DER). */
export function checkIdentityKey(key: Tpm2bPublic, csrSpki: Buffer): void {
  const v = key.value;
  const lacking = missingAttributes(v, KEY_ATTRIBUTES);
  if (lacking.length > 0) {
    throw new SigilError(
      'key_not_tpm_resident',
      `the identity key (attributes ${attributesHex(v)}) lacks ${lacking.join(', ')}: it was not generated in the TPM or can be duplicated out of it (exportable)`,
    );
  }
  if (!STRONG_HASHES.has(v.nameAlg)) {
    throw new SigilError(
      'key_not_tpm_resident',
      `the identity key's Name uses algorithm 0x${v.nameAlg.toString(16)}; a certification over it proves nothing (SHA-256+ required)`,
    );
  }
  let same = false;
  try {
    same = (p256Spki(v) ?? publicKeyObject(v).export({ type: 'spki', format: 'der' })).equals(csrSpki);
  } catch {
    same = false;
  }
  if (!same)
    throw new SigilError(
      'certify_key_mismatch',
      'the TPM identity key (key_public) is not the public key of the certificate request',
    );
}

/** SubjectPublicKeyInfo of a P-256 point up to the point (RFC 5480 §2: id-ecPublicKey, prime256v1, uncompressed). */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/**
 * The SPKI DER of a P-256 TPM key, built from its point: the bytes node:crypto's export gives
 * (named curve, uncompressed point), without importing the key (an import and an export cost more
 * than the rest of a renewal's key proof). Undefined for other keys, which are exported as before.
 * Whether the point is on the curve is not checked here: the caller compares with the CSR's SPKI,
 * whose key was imported and whose signature was verified.
 */
function p256Spki(v: Tpm2bPublic['value']): Buffer | undefined {
  if (v.type !== TPM_ALG.ECC || v.parameters.curveId !== TPM_ECC_CURVE.NIST_P256) return undefined;
  const x = padInt(v.unique.x, 32, 'ECC x');
  const y = padInt(v.unique.y, 32, 'ECC y');
  return Buffer.concat([P256_SPKI_PREFIX, Buffer.from([0x04]), x, y]);
}
