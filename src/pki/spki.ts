/**
 * SubjectPublicKeyInfo (RFC 5280 §4.1.2.7): which key types Sigil accepts, and the key
 * identifier derived from it. Callers pass SPKI DER around as-is; it is never re-encoded, so
 * the bytes in a CSR, the issued certificate and the CA pin stay identical.
 */
import * as nodeCrypto from 'node:crypto';
import type { ErrorCode } from '../errors.js';
import { TAG } from './der.js';
import { DerReader } from './der-reader.js';
import { OID } from './oids.js';

export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa';

export interface SpkiFields {
  /** AlgorithmIdentifier.algorithm, dotted. */
  algorithm: string;
  /** The named curve for id-ecPublicKey (RFC 5480 §2.1.1), dotted; undefined otherwise. */
  curve: string | undefined;
  /** The BIT STRING content without the unused-bits octet: the key itself. */
  publicKey: Buffer;
}

/** Structural parse of SPKI DER; throws `code` naming the problem. */
export function readSpki(spkiDer: Buffer, code: ErrorCode = 'bad_csr', what = 'public key'): SpkiFields {
  const r = new DerReader(spkiDer, code, what);
  const [alg, key, extra] = r.children(r.expect(r.root(), TAG.SEQUENCE, 'SubjectPublicKeyInfo'));
  if (extra !== undefined) r.fail('SubjectPublicKeyInfo has extra fields');
  const [algOid, params] = r.children(r.expect(alg, TAG.SEQUENCE, 'AlgorithmIdentifier'));
  const algorithm = r.oid(r.expect(algOid, TAG.OID, 'key algorithm'), 'key algorithm');
  let curve: string | undefined;
  if (algorithm === OID.ecPublicKey) {
    // RFC 5480 §2.1.1: namedCurve is the only form allowed; implicit/specified curves are refused.
    if (params === undefined || params.tag !== TAG.OID) r.fail('EC key without a named curve');
    curve = r.oid(params, 'EC curve');
  }
  const bits = r.bitString(r.expect(key, TAG.BIT_STRING, 'subjectPublicKey'), 'subjectPublicKey');
  if (bits.unusedBits !== 0) r.fail('subjectPublicKey has unused bits');
  return { algorithm, curve, publicKey: bits.bytes };
}

const CURVE_NAMES: Record<string, string> = {
  [OID.secp256r1]: 'P-256',
  [OID.secp384r1]: 'P-384',
  '1.3.132.0.35': 'P-521',
  '1.3.132.0.10': 'secp256k1',
};

/** Sigil's key type for an SPKI, or undefined with a reason when the key is not accepted. */
export function classifySpki(f: SpkiFields): { keyType: KeyType } | { reason: string } {
  if (f.algorithm === OID.ecPublicKey) {
    if (f.curve === OID.secp256r1) return { keyType: 'ec-p256' };
    if (f.curve === OID.secp384r1) return { keyType: 'ec-p384' };
    return { reason: `EC curve ${CURVE_NAMES[f.curve ?? ''] ?? f.curve} is not supported (use P-256 or P-384)` };
  }
  if (f.algorithm === OID.rsaEncryption) return { keyType: 'rsa' };
  const names: Record<string, string> = {
    '1.3.101.112': 'Ed25519',
    '1.3.101.113': 'Ed448',
    '1.2.840.10040.4.1': 'DSA',
    '1.2.840.113549.1.1.10': 'RSA-PSS',
  };
  return {
    reason: `key algorithm ${names[f.algorithm] ?? f.algorithm} is not supported (use EC P-256, P-384 or RSA >= 2048)`,
  };
}

/**
 * RFC 5280 §4.2.1.2 method (1): the SHA-1 of the subjectPublicKey BIT STRING value, excluding
 * tag, length and unused-bits octet. SHA-1 here is an identifier, not a security property.
 */
export function keyIdentifier(publicKeyBits: Buffer): Buffer {
  // One-shot crypto.hash (Node >= 20.12) is ~2x faster than createHash on this hot path.
  return typeof nodeCrypto.hash === 'function'
    ? nodeCrypto.hash('sha1', publicKeyBits, 'buffer')
    : nodeCrypto.createHash('sha1').update(publicKeyBits).digest();
}
