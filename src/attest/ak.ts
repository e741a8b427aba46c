/**
 * The attestation key (AK): the key whose signatures over quotes and certifications the
 * issuer believes.
 *
 *   ak_attributes_invalid  RSA/ECC, restricted | sign | fixedTPM | fixedParent |
 *                          sensitiveDataOrigin, not decrypt, SHA-256+ name. Restricted is what
 *                          makes its signatures mean something: such a key signs only digests
 *                          the TPM computed itself, never external data that starts with
 *                          TPM_GENERATED_VALUE (Part 1 §25.2.3), so a quote or certification
 *                          cannot be forged with it.
 *
 * That the AK is in the TPM of a given EK is proven by credential activation (./credential.ts).
 */
import { SigilError } from '../errors.js';
import { TPM_ALG, TPMA_OBJECT } from '../tpm/constants.js';
import { verifyTpmSignature } from '../tpm/crypto/signature.js';
import { publicKeyObject } from '../tpm/structures/keys.js';
import type { Tpm2bPublic, TpmtPublic } from '../tpm/structures/public.js';
import type { TpmtSignature } from '../tpm/structures/signature.js';
import { attributesHex, missingAttributes, STRONG_HASHES } from './attributes.js';
import type { SignedAttest } from './structures.js';

export const AK_ATTRIBUTES =
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin;

export function checkAk(ak: Tpm2bPublic): void {
  const v = ak.value;
  const fail = (why: string): never => {
    throw new SigilError('ak_attributes_invalid', `the attestation key (attributes ${attributesHex(v)}) ${why}`);
  };
  if (v.type !== TPM_ALG.ECC && v.type !== TPM_ALG.RSA) fail('is neither an ECC nor an RSA key');
  const lacking = missingAttributes(v, AK_ATTRIBUTES);
  if (lacking.length > 0)
    fail(`lacks ${lacking.join(', ')}: it must be a restricted signing key generated in and bound to the TPM`);
  if ((v.objectAttributes & TPMA_OBJECT.decrypt) !== 0) fail('has decrypt set: an attestation key must only sign');
  if (!STRONG_HASHES.has(v.nameAlg))
    fail(`has name algorithm 0x${v.nameAlg.toString(16)}; SHA-256, SHA-384 or SHA-512 is required`);
  try {
    publicKeyObject(v);
  } catch (err) {
    fail(`has no usable public key: ${(err as Error).message}`);
  }
}

/**
 * Whether the AK signed the exact TPMS_ATTEST bytes, with a SHA-256+ scheme (a SHA-1 signature
 * over an attestation is refused like a bad one).
 */
export function signedByAk(ak: TpmtPublic, a: SignedAttest): boolean {
  const sig = a.signature as TpmtSignature & { hash?: number };
  if (sig.hash === undefined || !STRONG_HASHES.has(sig.hash)) return false;
  try {
    return verifyTpmSignature(ak, a.attest.bytes, a.signature);
  } catch {
    return false; // an algorithm the AK cannot have made
  }
}
