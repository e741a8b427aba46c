/**
 * Sensitive areas going into the TPM (Part 2 §12.3): the auth value and data of a new object,
 * and a software key's private part for LoadExternal.
 */
import { tpm2bAuth, tpm2bDigest, tpm2bSensitiveData } from './basic.js';
import { bytes2b, codec, sized } from './codec.js';
import type { Codec } from './codec.js';

/** Part 2 §12.3.1.1 TPMS_SENSITIVE_CREATE. */
export interface TpmsSensitiveCreate {
  /** The new object's auth value (empty for none). */
  userAuth: Uint8Array;
  /** Data to seal, or empty. */
  data: Uint8Array;
}

export const tpmsSensitiveCreate: Codec<TpmsSensitiveCreate> = codec(
  'TPMS_SENSITIVE_CREATE',
  (r) => ({ userAuth: tpm2bAuth.read(r), data: tpm2bSensitiveData.read(r) }),
  (w, v) => {
    tpm2bAuth.write(w, v.userAuth);
    tpm2bSensitiveData.write(w, v.data);
  },
);

/** Part 2 §12.3.1.3 TPM2B_SENSITIVE_CREATE. */
export const tpm2bSensitiveCreate = sized('TPM2B_SENSITIVE_CREATE', tpmsSensitiveCreate);

export const EMPTY_SENSITIVE_CREATE = { value: { userAuth: new Uint8Array(0), data: new Uint8Array(0) } } as const;

/** Part 2 §12.3.2.5 TPMT_SENSITIVE: `sensitive` is the RSA prime p, ECC d, HMAC key or AES key. */
export interface TpmtSensitive {
  sensitiveType: number;
  authValue: Uint8Array;
  seedValue: Uint8Array;
  sensitive: Uint8Array;
}

export const tpmtSensitive: Codec<TpmtSensitive> = codec(
  'TPMT_SENSITIVE',
  (r) => ({
    sensitiveType: r.u16('sensitiveType'),
    authValue: tpm2bAuth.read(r),
    seedValue: tpm2bDigest.read(r),
    sensitive: bytes2b('TPMU_SENSITIVE_COMPOSITE').read(r),
  }),
  (w, v) => {
    w.u16(v.sensitiveType);
    tpm2bAuth.write(w, v.authValue);
    tpm2bDigest.write(w, v.seedValue);
    w.tpm2b(v.sensitive);
  },
);

/** Part 2 §12.3.3 TPM2B_SENSITIVE; LoadExternal of a public key sends it empty. */
export const tpm2bSensitive = sized('TPM2B_SENSITIVE', tpmtSensitive);
