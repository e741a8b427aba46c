/**
 * TPMT_PUBLIC ↔ node:crypto KeyObject / SubjectPublicKeyInfo DER.
 *
 * ECC: the TPM's unique field is the point (x, y) as TPM2B_ECC_PARAMETERs; the SPKI form is the
 * uncompressed point 0x04 ‖ x ‖ y with both coordinates padded to the curve size (SEC 1 §2.3.3,
 * RFC 5480 §2.2). RSA: the unique field is the modulus n and the exponent sits in the
 * parameters, 0 meaning 65537 (Part 2 §12.2.3.5).
 */
import { createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { TPM_ALG, TPM_ECC_CURVE, TPMA_OBJECT } from '../constants.js';
import type { EccPublic, RsaPublic, TpmtPublic } from './public.js';
import { SCHEME_NULL, SYM_NULL } from './schemes.js';
import type { TpmtEccScheme, TpmtRsaScheme } from './schemes.js';

interface CurveInfo {
  tpm: number;
  jwk: string;
  bytes: number;
}

const CURVES: readonly CurveInfo[] = [
  { tpm: TPM_ECC_CURVE.NIST_P256, jwk: 'P-256', bytes: 32 },
  { tpm: TPM_ECC_CURVE.NIST_P384, jwk: 'P-384', bytes: 48 },
  { tpm: TPM_ECC_CURVE.NIST_P521, jwk: 'P-521', bytes: 66 },
];

export function curveInfo(curveId: number): CurveInfo {
  const c = CURVES.find((x) => x.tpm === curveId);
  if (!c)
    throw new SigilError(
      'unsupported_key',
      `TPM ECC curve 0x${curveId.toString(16)} is not supported (use P-256, P-384 or P-521)`,
    );
  return c;
}

/** Left-pad a big-endian integer to `size` bytes; refuses values that do not fit. */
export function padInt(v: Uint8Array, size: number, what = 'integer'): Buffer {
  let start = 0;
  while (start < v.length - 1 && v[start] === 0 && v.length - start > size) start++;
  const t = v.subarray(start);
  if (t.length > size) throw new SigilError('bad_request', `${what} is ${t.length} bytes, more than ${size}`);
  const out = Buffer.alloc(size);
  out.set(t, size - t.length);
  return out;
}

function b64u(b: Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}

function stripZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** The public key of an RSA or ECC TPMT_PUBLIC as a node KeyObject. */
export function publicKeyObject(pub: TpmtPublic): KeyObject {
  if (pub.type === TPM_ALG.ECC) {
    const c = curveInfo(pub.parameters.curveId);
    const x = padInt(pub.unique.x, c.bytes, 'ECC x');
    const y = padInt(pub.unique.y, c.bytes, 'ECC y');
    try {
      return createPublicKey({ key: { kty: 'EC', crv: c.jwk, x: b64u(x), y: b64u(y) }, format: 'jwk' });
    } catch (err) {
      throw new SigilError('unsupported_key', 'the TPM ECC point is not on its curve', { cause: err });
    }
  }
  if (pub.type === TPM_ALG.RSA) {
    if (pub.unique.length === 0) throw new SigilError('unsupported_key', 'the RSA public area has no modulus');
    const exponent = pub.parameters.exponent === 0 ? 65537 : pub.parameters.exponent;
    const e = Buffer.alloc(4);
    e.writeUInt32BE(exponent);
    try {
      return createPublicKey({
        key: { kty: 'RSA', n: b64u(stripZeros(pub.unique)), e: b64u(stripZeros(e)) },
        format: 'jwk',
      });
    } catch (err) {
      throw new SigilError('unsupported_key', 'the TPM RSA public key is not valid', { cause: err });
    }
  }
  throw new SigilError('unsupported_key', `TPM object type 0x${pub.type.toString(16)} has no asymmetric public key`);
}

/** SubjectPublicKeyInfo DER of an RSA or ECC TPMT_PUBLIC. */
export function publicKeySpki(pub: TpmtPublic): Buffer {
  return publicKeyObject(pub).export({ type: 'spki', format: 'der' });
}

/** The uncompressed SEC 1 point 0x04 ‖ x ‖ y of an ECC public area. */
export function eccUncompressedPoint(pub: EccPublic): Buffer {
  const c = curveInfo(pub.parameters.curveId);
  return Buffer.concat([
    Buffer.from([4]),
    padInt(pub.unique.x, c.bytes, 'ECC x'),
    padInt(pub.unique.y, c.bytes, 'ECC y'),
  ]);
}

export interface PublicFromKeyOptions {
  nameAlg?: number;
  objectAttributes?: number;
  authPolicy?: Uint8Array;
  /** Scheme for the key (default NULL: any scheme allowed at use). */
  eccScheme?: TpmtEccScheme;
  rsaScheme?: TpmtRsaScheme;
}

/**
 * A TPMT_PUBLIC for a software public key (for LoadExternal, or to compute the Name a TPM
 * would give it). Defaults: SHA-256 name, sign|userWithAuth, NULL scheme.
 */
export function publicFromKeyObject(key: KeyObject, opts: PublicFromKeyOptions = {}): RsaPublic | EccPublic {
  if (key.type !== 'public') key = createPublicKey(key);
  const jwk = key.export({ format: 'jwk' });
  const common = {
    nameAlg: opts.nameAlg ?? TPM_ALG.SHA256,
    objectAttributes: opts.objectAttributes ?? TPMA_OBJECT.sign | TPMA_OBJECT.userWithAuth,
    authPolicy: opts.authPolicy ?? new Uint8Array(0),
  };
  if (jwk.kty === 'EC') {
    const c = CURVES.find((x) => x.jwk === jwk.crv);
    if (!c || jwk.x === undefined || jwk.y === undefined)
      throw new SigilError('unsupported_key', `EC curve ${jwk.crv} is not supported`);
    return {
      type: TPM_ALG.ECC,
      ...common,
      parameters: { symmetric: SYM_NULL, scheme: opts.eccScheme ?? SCHEME_NULL, curveId: c.tpm, kdf: SCHEME_NULL },
      unique: {
        x: padInt(Buffer.from(jwk.x, 'base64url'), c.bytes),
        y: padInt(Buffer.from(jwk.y, 'base64url'), c.bytes),
      },
    };
  }
  if (jwk.kty === 'RSA' && jwk.n !== undefined && jwk.e !== undefined) {
    const n = stripZeros(Buffer.from(jwk.n, 'base64url'));
    const eBytes = Buffer.from(jwk.e, 'base64url');
    if (eBytes.length > 4) throw new SigilError('unsupported_key', 'RSA public exponent is too large for a TPM');
    const e = eBytes.reduce((acc, b) => acc * 256 + b, 0);
    return {
      type: TPM_ALG.RSA,
      ...common,
      parameters: {
        symmetric: SYM_NULL,
        scheme: opts.rsaScheme ?? SCHEME_NULL,
        keyBits: n.length * 8,
        exponent: e === 65537 ? 0 : e,
      },
      unique: n,
    };
  }
  throw new SigilError('unsupported_key', `key type ${String(jwk.kty)} cannot be expressed as a TPM public area`);
}
