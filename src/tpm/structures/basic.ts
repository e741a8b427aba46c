/**
 * Byte-buffer TPM2Bs, digests and small fixed structures (Part 2 §10).
 *
 * The bounds on the TPM2Bs are the largest values any TPM can produce for them (64-byte
 * digests, 4096-bit RSA, 640-bit ECC); implementation-dependent buffers stay unbounded here
 * and are limited by the TPM itself.
 */
import { digestSize } from '../crypto/hash.js';
import { bytes2b, codec, list, u32 } from './codec.js';
import type { Codec } from './codec.js';

const MAX_DIGEST = 64;

/** Part 2 §10.4.2 TPM2B_DIGEST. */
export const tpm2bDigest = bytes2b('TPM2B_DIGEST', MAX_DIGEST);
/** Part 2 §10.4.3 TPM2B_DATA (up to a TPMT_HA). */
export const tpm2bData = bytes2b('TPM2B_DATA', MAX_DIGEST + 2);
/** Part 2 §10.4.4 TPM2B_NONCE. */
export const tpm2bNonce = bytes2b('TPM2B_NONCE', MAX_DIGEST);
/** Part 2 §10.4.5 TPM2B_AUTH. */
export const tpm2bAuth = bytes2b('TPM2B_AUTH', MAX_DIGEST);
/** Part 2 §10.4.6 TPM2B_OPERAND. */
export const tpm2bOperand = bytes2b('TPM2B_OPERAND', MAX_DIGEST);
/** Part 2 §10.4.8 TPM2B_MAX_BUFFER. */
export const tpm2bMaxBuffer = bytes2b('TPM2B_MAX_BUFFER');
/** Part 2 §10.4.9 TPM2B_MAX_NV_BUFFER. */
export const tpm2bMaxNvBuffer = bytes2b('TPM2B_MAX_NV_BUFFER');
/** Part 2 §10.4.10 TPM2B_TIMEOUT. */
export const tpm2bTimeout = bytes2b('TPM2B_TIMEOUT', 8);
/** Part 2 §10.5.3 TPM2B_NAME: a digest prefixed by its algorithm, or a 4-byte handle. */
export const tpm2bName = bytes2b('TPM2B_NAME', MAX_DIGEST + 2);
/** Part 2 §11.2.5.1 TPM2B_ECC_PARAMETER. */
export const tpm2bEccParameter = bytes2b('TPM2B_ECC_PARAMETER', 128);
/** Part 2 §11.2.4.5 TPM2B_PUBLIC_KEY_RSA. */
export const tpm2bPublicKeyRsa = bytes2b('TPM2B_PUBLIC_KEY_RSA', 512);
/** Part 2 §11.1.14 TPM2B_SENSITIVE_DATA. */
export const tpm2bSensitiveData = bytes2b('TPM2B_SENSITIVE_DATA');
/** Part 2 §12.3.7 TPM2B_PRIVATE: opaque outside the TPM that made it. */
export const tpm2bPrivate = bytes2b('TPM2B_PRIVATE');
/** Part 2 §12.4.3 TPM2B_ID_OBJECT: MakeCredential's credentialBlob. */
export const tpm2bIdObject = bytes2b('TPM2B_ID_OBJECT');
/** Part 2 §11.4.33 TPM2B_ENCRYPTED_SECRET: a seed encrypted to a key (salt, credential). */
export const tpm2bEncryptedSecret = bytes2b('TPM2B_ENCRYPTED_SECRET');
/** Part 2 §14.5 TPM2B_CONTEXT_DATA. */
export const tpm2bContextData = bytes2b('TPM2B_CONTEXT_DATA');

/** Part 2 §10.3.2 TPMT_HA: a digest whose size follows from its algorithm (no size field). */
export interface TpmtHa {
  hashAlg: number;
  digest: Uint8Array;
}

export const tpmtHa: Codec<TpmtHa> = codec(
  'TPMT_HA',
  (r) => {
    const hashAlg = r.u16('TPMT_HA.hashAlg');
    let size: number;
    try {
      size = digestSize(hashAlg);
    } catch {
      return r.fail(`TPMT_HA with unknown hash algorithm 0x${hashAlg.toString(16)}`);
    }
    return { hashAlg, digest: r.bytes(size, 'TPMT_HA.digest') };
  },
  (w, v) => {
    if (v.digest.length !== digestSize(v.hashAlg))
      throw new TypeError('TPMT_HA digest size does not match its algorithm');
    w.u16(v.hashAlg).bytes(v.digest);
  },
);

/** Part 2 §10.9.4 TPML_DIGEST (at most 8 entries). */
export const tpmlDigest = list('TPML_DIGEST', tpm2bDigest, 8);
/** Part 2 §10.9.5 TPML_DIGEST_VALUES: one TPMT_HA per bank (PCR_Extend). */
export const tpmlDigestValues = list('TPML_DIGEST_VALUES', tpmtHa, 16);
/** Part 2 §10.9.3 TPML_HANDLE. */
export const tpmlHandle = list('TPML_HANDLE', u32, 1024);

/** Part 2 §10.11.1 TPMS_CLOCK_INFO. */
export interface TpmsClockInfo {
  /** Milliseconds the TPM has been powered since its last Clear. */
  clock: bigint;
  resetCount: number;
  restartCount: number;
  /** True when `clock` cannot have gone backwards. */
  safe: boolean;
}

export const tpmsClockInfo: Codec<TpmsClockInfo> = codec(
  'TPMS_CLOCK_INFO',
  (r) => {
    const clock = r.u64('clock');
    const resetCount = r.u32('resetCount');
    const restartCount = r.u32('restartCount');
    const safe = r.u8('safe');
    if (safe > 1) r.fail(`TPMS_CLOCK_INFO.safe is ${safe}`);
    return { clock, resetCount, restartCount, safe: safe === 1 };
  },
  (w, v) =>
    void w
      .u64(v.clock)
      .u32(v.resetCount)
      .u32(v.restartCount)
      .u8(v.safe ? 1 : 0),
);

/** Part 2 §10.11.6 TPMS_TIME_INFO. */
export interface TpmsTimeInfo {
  time: bigint;
  clockInfo: TpmsClockInfo;
}

export const tpmsTimeInfo: Codec<TpmsTimeInfo> = codec(
  'TPMS_TIME_INFO',
  (r) => ({ time: r.u64('time'), clockInfo: tpmsClockInfo.read(r) }),
  (w, v) => {
    w.u64(v.time);
    tpmsClockInfo.write(w, v.clockInfo);
  },
);
