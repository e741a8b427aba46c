/**
 * TPMT_SIGNATURE (Part 2 §11.3.4), discriminated on `sigAlg`.
 */
import { TPM_ALG } from '../constants.js';
import { tpm2bEccParameter, tpm2bPublicKeyRsa, tpmtHa } from './basic.js';
import { codec } from './codec.js';
import type { Codec } from './codec.js';

type A = typeof TPM_ALG;

export type RsaSigAlg = A['RSASSA'] | A['RSAPSS'];
export type EccSigAlg = A['ECDSA'] | A['ECDAA'] | A['SM2'] | A['ECSCHNORR'];

/** Part 2 §11.3.1 TPMS_SIGNATURE_RSA. */
export interface RsaSignature {
  sigAlg: RsaSigAlg;
  hash: number;
  sig: Uint8Array;
}

/** Part 2 §11.3.2 TPMS_SIGNATURE_ECC: r and s as big-endian integers (leading zeros may be stripped). */
export interface EccSignature {
  sigAlg: EccSigAlg;
  hash: number;
  r: Uint8Array;
  s: Uint8Array;
}

export interface HmacSignature {
  sigAlg: A['HMAC'];
  hashAlg: number;
  digest: Uint8Array;
}

export type TpmtSignature = { sigAlg: A['NULL'] } | RsaSignature | EccSignature | HmacSignature;

export function isEccSignature(s: TpmtSignature): s is EccSignature {
  return (
    s.sigAlg === TPM_ALG.ECDSA ||
    s.sigAlg === TPM_ALG.ECDAA ||
    s.sigAlg === TPM_ALG.SM2 ||
    s.sigAlg === TPM_ALG.ECSCHNORR
  );
}

export function isRsaSignature(s: TpmtSignature): s is RsaSignature {
  return s.sigAlg === TPM_ALG.RSASSA || s.sigAlg === TPM_ALG.RSAPSS;
}

export const tpmtSignature: Codec<TpmtSignature> = codec(
  'TPMT_SIGNATURE',
  (r) => {
    const sigAlg = r.u16('TPMT_SIGNATURE.sigAlg');
    switch (sigAlg) {
      case TPM_ALG.NULL:
        return { sigAlg };
      case TPM_ALG.RSASSA:
      case TPM_ALG.RSAPSS:
        return { sigAlg, hash: r.u16('hash'), sig: tpm2bPublicKeyRsa.read(r) };
      case TPM_ALG.ECDSA:
      case TPM_ALG.ECDAA:
      case TPM_ALG.SM2:
      case TPM_ALG.ECSCHNORR:
        return { sigAlg, hash: r.u16('hash'), r: tpm2bEccParameter.read(r), s: tpm2bEccParameter.read(r) };
      case TPM_ALG.HMAC: {
        const ha = tpmtHa.read(r);
        return { sigAlg, hashAlg: ha.hashAlg, digest: ha.digest };
      }
      default:
        return r.fail(`unsupported signature algorithm 0x${sigAlg.toString(16)}`);
    }
  },
  (w, v) => {
    w.u16(v.sigAlg);
    if (v.sigAlg === TPM_ALG.NULL) return;
    if (v.sigAlg === TPM_ALG.HMAC) {
      tpmtHa.write(w, { hashAlg: v.hashAlg, digest: v.digest });
      return;
    }
    if (isRsaSignature(v)) {
      w.u16(v.hash);
      tpm2bPublicKeyRsa.write(w, v.sig);
      return;
    }
    w.u16(v.hash);
    tpm2bEccParameter.write(w, v.r);
    tpm2bEccParameter.write(w, v.s);
  },
);
