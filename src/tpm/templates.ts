/**
 * Key templates (TPMT_PUBLIC inputs to CreatePrimary / Create). A primary key is a
 * deterministic function of its hierarchy's seed and the exact template bytes, so these must
 * match other software byte for byte to find the same keys.
 */
import { TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT as A } from './constants.js';
import { ekPolicyA, ekPolicyB } from './crypto/policy.js';
import type { EccPublic, RsaPublic } from './structures/public.js';
import { AES_128_CFB, SCHEME_NULL, SYM_NULL } from './structures/schemes.js';

const EMPTY = new Uint8Array(0);

/** fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt: 0x000300b2. */
const EK_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.adminWithPolicy | A.restricted | A.decrypt;

/**
 * TCG EK Credential Profile 2.5, Template L-1: RSA 2048 storage EK, SHA-256, PolicyA
 * (PolicySecret(TPM_RH_ENDORSEMENT)), AES-128-CFB, unique = 256 zero bytes. Persistent at
 * 0x81010001, certificate in NV 0x01c00002.
 */
export function ekTemplateRsa2048(): RsaPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: EK_ATTRIBUTES,
    authPolicy: ekPolicyA(TPM_ALG.SHA256),
    parameters: { symmetric: AES_128_CFB, scheme: SCHEME_NULL, keyBits: 2048, exponent: 0 },
    unique: new Uint8Array(256),
  };
}

/**
 * TCG EK Credential Profile 2.5, Template L-2: ECC NIST P-256 storage EK, SHA-256, PolicyA,
 * AES-128-CFB, unique = two 32-byte zero coordinates. Persistent at 0x81010002, certificate
 * in NV 0x01c0000a.
 */
export function ekTemplateEccP256(): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: EK_ATTRIBUTES,
    authPolicy: ekPolicyA(TPM_ALG.SHA256),
    parameters: { symmetric: AES_128_CFB, scheme: SCHEME_NULL, curveId: TPM_ECC_CURVE.NIST_P256, kdf: SCHEME_NULL },
    unique: { x: new Uint8Array(32), y: new Uint8Array(32) },
  };
}

/**
 * TCG EK Credential Profile 2.5, Template H-3: ECC NIST P-384 high-range EK, SHA-384,
 * userWithAuth set, PolicyB (PolicyOR of PolicySecret(endorsement) and PolicyAuthorizeNV),
 * AES-256-CFB, empty unique. This is the ECC EK swtpm_setup creates (0x81010016, certificate
 * in NV 0x01c00016).
 */
export function ekTemplateEccP384(): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA384,
    objectAttributes: EK_ATTRIBUTES | A.userWithAuth,
    authPolicy: ekPolicyB(TPM_ALG.SHA384),
    parameters: {
      symmetric: { algorithm: TPM_ALG.AES, keyBits: 256, mode: TPM_ALG.CFB },
      scheme: SCHEME_NULL,
      curveId: TPM_ECC_CURVE.NIST_P384,
      kdf: SCHEME_NULL,
    },
    unique: { x: EMPTY, y: EMPTY },
  };
}

/**
 * The storage root key (SRK) Sigil uses under the owner hierarchy: ECC P-256, SHA-256,
 * fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | restricted | decrypt
 * (0x00030472), AES-128-CFB, NULL scheme and KDF, empty unique.
 *
 * This is byte for byte the primary that tpm2-openssl (Debian 1.1.1, `primaryEccTemplate`)
 * recreates for a TSS2 PRIVATE KEY whose parent is TPM_RH_OWNER, so keys Sigil creates under
 * it load in OpenSSL's tpm2 provider and the other way round. It differs from
 * `tpm2_createprimary -C o -G ecc` only in noDA (tpm2-tools' default is 0x00030072); tpm2-tools
 * users pass `-a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt'`.
 */
export function srkTemplateEccP256(): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes:
      A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.restricted | A.decrypt,
    authPolicy: EMPTY,
    parameters: { symmetric: AES_128_CFB, scheme: SCHEME_NULL, curveId: TPM_ECC_CURVE.NIST_P256, kdf: SCHEME_NULL },
    unique: { x: EMPTY, y: EMPTY },
  };
}

/**
 * Attestation key: restricted ECDSA P-256 / SHA-256 signing key,
 * fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign (0x00050072).
 * A restricted signing key only signs TPM-generated structures (quotes, certifications) and
 * digests the TPM hashed itself, so its signatures cannot be forged over TPMS_ATTEST lookalikes
 * (Part 1 §25.2.3). Created under the SRK (owner hierarchy), as go-attestation does by default.
 */
export function akTemplateEccP256(): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.sign,
    authPolicy: EMPTY,
    parameters: {
      symmetric: SYM_NULL,
      scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
      curveId: TPM_ECC_CURVE.NIST_P256,
      kdf: SCHEME_NULL,
    },
    unique: { x: EMPTY, y: EMPTY },
  };
}

/**
 * Identity / general signing key: non-restricted ECDSA P-256,
 * fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | sign (0x00040072), NULL scheme
 * so the caller picks the hash at Sign time (SHA-256 for ES256, SHA-384 for ES384 digests).
 * fixedTPM + sensitiveDataOrigin are what TPM2_Certify lets a verifier check.
 */
export function signingKeyTemplateEccP256(): EccPublic {
  return {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.sign,
    authPolicy: EMPTY,
    parameters: { symmetric: SYM_NULL, scheme: SCHEME_NULL, curveId: TPM_ECC_CURVE.NIST_P256, kdf: SCHEME_NULL },
    unique: { x: EMPTY, y: EMPTY },
  };
}
