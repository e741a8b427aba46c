/**
 * TPMT_SIGNATURE → the encodings node:crypto and X.509 use, and software verification of a
 * TPM signature (the verifier's check of a quote or certify signature).
 *
 * ECDSA: IEEE P1363 is r ‖ s, each padded to the curve size; DER is
 * ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 §2.2.3 / RFC 3279 §2.2.3).
 */
import { constants, verify as nodeVerify } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { TPM_ALG } from '../constants.js';
import { curveInfo, padInt, publicKeyObject } from '../structures/keys.js';
import type { TpmtPublic } from '../structures/public.js';
import { isEccSignature, isRsaSignature } from '../structures/signature.js';
import type { EccSignature, TpmtSignature } from '../structures/signature.js';
import { nodeHashName } from './hash.js';

/** r ‖ s, each padded to `coordinateBytes` (32 for P-256, 48 for P-384). */
export function eccSignatureToP1363(sig: EccSignature, coordinateBytes: number): Buffer {
  return Buffer.concat([padInt(sig.r, coordinateBytes, 'signature r'), padInt(sig.s, coordinateBytes, 'signature s')]);
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  return Buffer.from([0x82, n >> 8, n & 0xff]);
}

function derInteger(v: Uint8Array): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  let body = Buffer.from(v.subarray(i));
  if (body.length === 0) body = Buffer.alloc(1);
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.alloc(1), body]);
  return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body]);
}

/** ECDSA-Sig-Value DER, as X.509 certificates and CSRs carry it. */
export function eccSignatureToDer(sig: EccSignature): Buffer {
  const body = Buffer.concat([derInteger(sig.r), derInteger(sig.s)]);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

/**
 * Verify a TPM signature over `message` (e.g. the exact TPMS_ATTEST bytes) with a public area.
 * The hash named in the signature is applied to `message`. Returns false on mismatch; throws
 * `unsupported_key` for algorithms it cannot check.
 */
export function verifyTpmSignature(pub: TpmtPublic, message: Uint8Array, sig: TpmtSignature): boolean {
  const key = publicKeyObject(pub);
  if (isEccSignature(sig)) {
    if (sig.sigAlg !== TPM_ALG.ECDSA || pub.type !== TPM_ALG.ECC) {
      throw new SigilError('unsupported_key', `signature algorithm 0x${sig.sigAlg.toString(16)} is not supported`);
    }
    const size = curveInfo(pub.parameters.curveId).bytes;
    let p1363: Buffer;
    try {
      p1363 = eccSignatureToP1363(sig, size);
    } catch {
      return false; // r or s longer than the curve: not a signature by this key
    }
    return nodeVerify(nodeHashName(sig.hash), message, { key, dsaEncoding: 'ieee-p1363' }, p1363);
  }
  if (isRsaSignature(sig)) {
    if (pub.type !== TPM_ALG.RSA) return false;
    const padding = sig.sigAlg === TPM_ALG.RSAPSS ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
    // TPMs use a salt as long as the digest, some the maximum; accept either (Part 1 §B.7).
    const saltLength = constants.RSA_PSS_SALTLEN_AUTO;
    return nodeVerify(nodeHashName(sig.hash), message, { key, padding, saltLength }, sig.sig);
  }
  throw new SigilError(
    'unsupported_key',
    `signature algorithm 0x${sig.sigAlg.toString(16)} cannot be verified in software`,
  );
}
