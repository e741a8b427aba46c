/**
 * TPMT_PUBLIC / TPM2B_PUBLIC (Part 2 §12.2): an object's public area. It is a template going
 * in (CreatePrimary, Create) and the object's identity coming out — its Name hashes these exact
 * bytes (Part 1 §16), so TPM2B_PUBLIC keeps them.
 */
import { TPM_ALG } from '../constants.js';
import { tpm2bDigest, tpm2bEccParameter, tpm2bPublicKeyRsa } from './basic.js';
import { codec, sized } from './codec.js';
import type { Codec, Sized } from './codec.js';
import { tpmtEccScheme, tpmtKdfScheme, tpmtKeyedHashScheme, tpmtRsaScheme, tpmtSymDefObject } from './schemes.js';
import type { TpmtEccScheme, TpmtKdfScheme, TpmtKeyedHashScheme, TpmtRsaScheme, TpmtSymDefObject } from './schemes.js';

/** Part 2 §12.2.3.5 TPMS_RSA_PARMS. */
export interface TpmsRsaParms {
  symmetric: TpmtSymDefObject;
  scheme: TpmtRsaScheme;
  keyBits: number;
  /** 0 means the default 65537. */
  exponent: number;
}

/** Part 2 §12.2.3.6 TPMS_ECC_PARMS. */
export interface TpmsEccParms {
  symmetric: TpmtSymDefObject;
  scheme: TpmtEccScheme;
  curveId: number;
  kdf: TpmtKdfScheme;
}

/** Part 2 §11.2.5.2 TPMS_ECC_POINT. */
export interface TpmsEccPoint {
  x: Uint8Array;
  y: Uint8Array;
}

interface PublicCommon {
  nameAlg: number;
  /** TPMA_OBJECT bits. */
  objectAttributes: number;
  authPolicy: Uint8Array;
}

export interface RsaPublic extends PublicCommon {
  type: typeof TPM_ALG.RSA;
  parameters: TpmsRsaParms;
  /** The modulus n (TPM2B_PUBLIC_KEY_RSA). */
  unique: Uint8Array;
}

export interface EccPublic extends PublicCommon {
  type: typeof TPM_ALG.ECC;
  parameters: TpmsEccParms;
  unique: TpmsEccPoint;
}

export interface KeyedHashPublic extends PublicCommon {
  type: typeof TPM_ALG.KEYEDHASH;
  parameters: { scheme: TpmtKeyedHashScheme };
  unique: Uint8Array;
}

export interface SymCipherPublic extends PublicCommon {
  type: typeof TPM_ALG.SYMCIPHER;
  parameters: { symmetric: TpmtSymDefObject };
  unique: Uint8Array;
}

/** Part 2 §12.2.4 TPMT_PUBLIC, discriminated on `type`. */
export type TpmtPublic = RsaPublic | EccPublic | KeyedHashPublic | SymCipherPublic;

export const tpmsRsaParms: Codec<TpmsRsaParms> = codec(
  'TPMS_RSA_PARMS',
  (r) => ({
    symmetric: tpmtSymDefObject.read(r),
    scheme: tpmtRsaScheme.read(r),
    keyBits: r.u16('keyBits'),
    exponent: r.u32('exponent'),
  }),
  (w, v) => {
    tpmtSymDefObject.write(w, v.symmetric);
    tpmtRsaScheme.write(w, v.scheme);
    w.u16(v.keyBits).u32(v.exponent);
  },
);

export const tpmsEccParms: Codec<TpmsEccParms> = codec(
  'TPMS_ECC_PARMS',
  (r) => ({
    symmetric: tpmtSymDefObject.read(r),
    scheme: tpmtEccScheme.read(r),
    curveId: r.u16('curveID'),
    kdf: tpmtKdfScheme.read(r),
  }),
  (w, v) => {
    tpmtSymDefObject.write(w, v.symmetric);
    tpmtEccScheme.write(w, v.scheme);
    w.u16(v.curveId);
    tpmtKdfScheme.write(w, v.kdf);
  },
);

export const tpmsEccPoint: Codec<TpmsEccPoint> = codec(
  'TPMS_ECC_POINT',
  (r) => ({ x: tpm2bEccParameter.read(r), y: tpm2bEccParameter.read(r) }),
  (w, v) => {
    tpm2bEccParameter.write(w, v.x);
    tpm2bEccParameter.write(w, v.y);
  },
);

export const tpmtPublic: Codec<TpmtPublic> = codec(
  'TPMT_PUBLIC',
  (r) => {
    const type = r.u16('TPMT_PUBLIC.type');
    const nameAlg = r.u16('TPMT_PUBLIC.nameAlg');
    const objectAttributes = r.u32('TPMT_PUBLIC.objectAttributes');
    const authPolicy = tpm2bDigest.read(r);
    const common = { nameAlg, objectAttributes, authPolicy };
    switch (type) {
      case TPM_ALG.RSA:
        return { type, ...common, parameters: tpmsRsaParms.read(r), unique: tpm2bPublicKeyRsa.read(r) };
      case TPM_ALG.ECC:
        return { type, ...common, parameters: tpmsEccParms.read(r), unique: tpmsEccPoint.read(r) };
      case TPM_ALG.KEYEDHASH:
        return { type, ...common, parameters: { scheme: tpmtKeyedHashScheme.read(r) }, unique: tpm2bDigest.read(r) };
      case TPM_ALG.SYMCIPHER:
        return { type, ...common, parameters: { symmetric: tpmtSymDefObject.read(r) }, unique: tpm2bDigest.read(r) };
      default:
        return r.fail(`unsupported public key type 0x${type.toString(16)}`);
    }
  },
  (w, v) => {
    w.u16(v.type).u16(v.nameAlg).u32(v.objectAttributes);
    tpm2bDigest.write(w, v.authPolicy);
    switch (v.type) {
      case TPM_ALG.RSA:
        tpmsRsaParms.write(w, v.parameters);
        tpm2bPublicKeyRsa.write(w, v.unique);
        return;
      case TPM_ALG.ECC:
        tpmsEccParms.write(w, v.parameters);
        tpmsEccPoint.write(w, v.unique);
        return;
      case TPM_ALG.KEYEDHASH:
        tpmtKeyedHashScheme.write(w, v.parameters.scheme);
        tpm2bDigest.write(w, v.unique);
        return;
      case TPM_ALG.SYMCIPHER:
        tpmtSymDefObject.write(w, v.parameters.symmetric);
        tpm2bDigest.write(w, v.unique);
        return;
    }
  },
);

/** Part 2 §12.2.5 TPM2B_PUBLIC, keeping the exact TPMT_PUBLIC bytes. */
export const tpm2bPublic = sized('TPM2B_PUBLIC', tpmtPublic);
export type Tpm2bPublic = Sized<TpmtPublic>;

/** Whether all the given TPMA_OBJECT bits are set. */
export function hasAttributes(pub: TpmtPublic, bits: number): boolean {
  return (pub.objectAttributes & bits) >>> 0 === bits >>> 0;
}
