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
import { constants, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { TPM_ALG, TPMA_OBJECT } from '../tpm/constants.js';
import { nodeHashName } from '../tpm/crypto/hash.js';
import { eccSignatureToP1363 } from '../tpm/crypto/signature.js';
import { curveInfo, publicKeyObject } from '../tpm/structures/keys.js';
import type { Tpm2bPublic, TpmtPublic } from '../tpm/structures/public.js';
import { isEccSignature, isRsaSignature, type TpmtSignature } from '../tpm/structures/signature.js';
import { attributesHex, missingAttributes, STRONG_HASHES } from './attributes.js';
import { parsePublic, type SignedAttest } from './structures.js';

export const AK_ATTRIBUTES =
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin;

/** The AK's attributes are an attestation key's (see the module comment); returns its public key. */
export function checkAk(ak: Tpm2bPublic): KeyObject {
  checkAkAttributes(ak);
  return akKeyObject(ak);
}

function akFail(v: TpmtPublic, why: string): never {
  throw new SigilError('ak_attributes_invalid', `the attestation key (attributes ${attributesHex(v)}) ${why}`);
}

function checkAkAttributes(ak: Tpm2bPublic): void {
  const v = ak.value;
  if (v.type !== TPM_ALG.ECC && v.type !== TPM_ALG.RSA) akFail(v, 'is neither an ECC nor an RSA key');
  const lacking = missingAttributes(v, AK_ATTRIBUTES);
  if (lacking.length > 0)
    akFail(v, `lacks ${lacking.join(', ')}: it must be a restricted signing key generated in and bound to the TPM`);
  if ((v.objectAttributes & TPMA_OBJECT.decrypt) !== 0) akFail(v, 'has decrypt set: an attestation key must only sign');
  if (!STRONG_HASHES.has(v.nameAlg))
    akFail(v, `has name algorithm 0x${v.nameAlg.toString(16)}; SHA-256, SHA-384 or SHA-512 is required`);
}

function akKeyObject(ak: Tpm2bPublic): KeyObject {
  try {
    return publicKeyObject(ak.value);
  } catch (err) {
    return akFail(ak.value, `has no usable public key: ${(err as Error).message}`);
  }
}

/** An AK's public area, checked by {@link checkAk}, and its public key. */
export interface CheckedAk {
  readonly public: Tpm2bPublic;
  readonly key: KeyObject;
}

/**
 * The AKs instances joined with, as the issuer reads them at every renewal and attestation (fact
 * `ak_public`, TPM2B_PUBLIC base64): parsed, checked ({@link checkAk}'s attribute rules) and
 * imported once per distinct text, then kept (the import — OpenSSL's JWK decoder — cost more than
 * the signature check it serves; the parse and the attribute check were another ~10 µs of a
 * renewal with a quote, bench/tpm-renew.ts).
 *
 * Why this cannot weaken a check: an entry is keyed by the exact text and holds what parsing and
 * checking that text gives, which depends on nothing else (the attribute rules are constants);
 * a text that fails to parse or is refused is never kept, so it is refused at every use; every
 * signature is still verified with the key. The entries are frozen and shared: callers only read
 * them. One per issuer (the tpm join method's), bounded (least recently used entries go first).
 */
export class AkKeys {
  readonly #max: number;
  /** Checked AKs by exact text, least recently used first. */
  readonly #checked = new Map<string, CheckedAk>();

  constructor(maxEntries = 20_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    this.#max = maxEntries;
  }

  /** `text`: the recorded TPM2B_PUBLIC, base64 (`what`, `code`: how a parse failure is reported). */
  checked(text: string, what: string, code: ErrorCode): CheckedAk {
    const kept = this.#checked.get(text);
    if (kept !== undefined) {
      this.#checked.delete(text);
      this.#checked.set(text, kept);
      return kept;
    }
    const pub = parsePublic(text, what, code);
    checkAkAttributes(pub);
    const ak: CheckedAk = Object.freeze({ public: pub, key: akKeyObject(pub) });
    this.#checked.set(text, ak);
    if (this.#checked.size > this.#max) this.#checked.delete(this.#checked.keys().next().value!);
    return ak;
  }
}

/**
 * Whether the AK signed the exact TPMS_ATTEST bytes, with a SHA-256+ scheme (a SHA-1 signature
 * over an attestation is refused like a bad one). `key`: the AK's public key when the caller has
 * it already (checkAk, {@link AkKeys}), else it is imported here.
 */
export function signedByAk(ak: TpmtPublic, a: SignedAttest, key?: KeyObject): boolean {
  const sig = a.signature as TpmtSignature & { hash?: number };
  if (sig.hash === undefined || !STRONG_HASHES.has(sig.hash)) return false;
  try {
    return verifyAkSignature(ak, key ?? publicKeyObject(ak), a.attest.bytes, a.signature);
  } catch {
    return false; // an algorithm the AK cannot have made
  }
}

/**
 * A TPM signature over `message` by the AK (ECDSA, or RSASSA/RSAPSS), as tpm/crypto/signature.ts
 * verifyTpmSignature checks it, with the AK's key already imported. The hash named in the
 * signature is applied to `message`.
 */
function verifyAkSignature(ak: TpmtPublic, key: KeyObject, message: Uint8Array, sig: TpmtSignature): boolean {
  if (isEccSignature(sig)) {
    if (sig.sigAlg !== TPM_ALG.ECDSA || ak.type !== TPM_ALG.ECC) return false;
    const p1363 = eccSignatureToP1363(sig, curveInfo(ak.parameters.curveId).bytes);
    return nodeVerify(nodeHashName(sig.hash), message, { key, dsaEncoding: 'ieee-p1363' }, p1363);
  }
  if (isRsaSignature(sig)) {
    if (ak.type !== TPM_ALG.RSA) return false;
    const padding = sig.sigAlg === TPM_ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
    // TPMs use a salt as long as the digest, some the maximum; accept either (Part 1 §B.7).
    return nodeVerify(
      nodeHashName(sig.hash),
      message,
      { key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
      sig.sig,
    );
  }
  return false;
}
