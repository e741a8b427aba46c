/**
 * Assembling and signing an X.509 v3 certificate (RFC 5280 §4.1) from already-encoded parts.
 * Issuance (issue.ts) and CA creation (ca.ts) share this, so every certificate Sigil makes goes
 * through the same encoder.
 */
import { sign, type KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import type { DeviceSignatureAlgorithm, DeviceSigner } from '../keystore/signer.js';
import { bitString, constructed, explicit, integer, nullValue, oid, sequence, TAG } from './der.js';
import { OID } from './oids.js';

export type CertHash = 'sha256' | 'sha384';

/** A CA private key with the signature algorithm it implies, encoded once. */
export interface CertSigningKey {
  readonly key: KeyObject;
  readonly hash: CertHash;
  /** AlgorithmIdentifier DER, placed both in TBSCertificate.signature and Certificate.signatureAlgorithm. */
  readonly algorithmId: Buffer;
}

/**
 * ECDSA P-256 → ecdsa-with-SHA256, P-384 → ecdsa-with-SHA384 (RFC 5758 §3.2: parameters
 * absent, not NULL), the hash matched to the curve strength (RFC 5480 §4). CA keys come from
 * the data directory, so anything else is `config_invalid`.
 */
export function certSigningKey(key: KeyObject): CertSigningKey {
  if (key.type !== 'private')
    throw new SigilError('config_invalid', `CA key must be a private key, got a ${key.type} key`);
  const curve = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  if (curve === 'prime256v1') return { key, hash: 'sha256', algorithmId: sequence(oid(OID.ecdsaWithSHA256)) };
  if (curve === 'secp384r1') return { key, hash: 'sha384', algorithmId: sequence(oid(OID.ecdsaWithSHA384)) };
  throw new SigilError(
    'config_invalid',
    `CA key must be ECDSA P-256 or P-384, got ${`${key.asymmetricKeyType ?? '?'} ${curve ?? ''}`.trim()}`,
  );
}

/** `[0] EXPLICIT Version` = v3 (2): certificates with extensions must be v3 (§4.1.2.1). */
const VERSION_V3 = explicit(0, integer(2));

export interface TbsParts {
  /** Encoded INTEGER TLV. */
  serial: Buffer;
  algorithmId: Buffer;
  issuer: Buffer;
  /** Encoded Time TLVs (der.time). */
  notBefore: Buffer;
  notAfter: Buffer;
  subject: Buffer;
  spki: Buffer;
  /** Encoded Extension TLVs, in output order. */
  extensions: readonly Buffer[];
}

/** TBSCertificate (§4.1.1.1); issuerUniqueID / subjectUniqueID are never written (§4.1.2.8). */
export function encodeTbs(p: TbsParts): Buffer {
  return constructed(TAG.SEQUENCE, [
    VERSION_V3,
    p.serial,
    p.algorithmId,
    p.issuer,
    sequence(p.notBefore, p.notAfter),
    p.subject,
    p.spki,
    explicit(3, constructed(TAG.SEQUENCE, p.extensions)),
  ]);
}

/**
 * Sign the exact TBS bytes and wrap them: `Certificate ::= SEQUENCE { tbs, signatureAlgorithm,
 * signatureValue BIT STRING }` (§4.1.1). ECDSA signatures go in as the DER Ecdsa-Sig-Value
 * (RFC 5480 §2.2.3 via RFC 3279 §2.2.3), hence dsaEncoding 'der'.
 */
export function signTbs(tbs: Buffer, k: CertSigningKey): Buffer {
  const signature = sign(k.hash, tbs, { key: k.key, dsaEncoding: 'der' });
  return sequence(tbs, k.algorithmId, bitString(signature));
}

/**
 * The AlgorithmIdentifier a {@link DeviceSigner} signs certificates with: ecdsa-with-SHA256 /
 * -SHA384 (RFC 5758 §3.2, parameters absent) or sha256WithRSAEncryption (RFC 4055 §5, NULL
 * parameters). PS256 would need RSASSA-PSS-params in the AlgorithmIdentifier; CA keys on a
 * token are opened with PKCS#1 v1.5 instead, so it is refused here.
 */
export function signerAlgorithmId(alg: DeviceSignatureAlgorithm): Buffer {
  switch (alg) {
    case 'ES256':
      return sequence(oid(OID.ecdsaWithSHA256));
    case 'ES384':
      return sequence(oid(OID.ecdsaWithSHA384));
    case 'RS256':
      return sequence(oid(OID.sha256WithRSAEncryption), nullValue());
    default:
      throw new SigilError(
        'unsupported_key',
        `a CA key signing with ${alg} is not supported (ECDSA P-256/P-384, or RSA with PKCS#1 v1.5)`,
      );
  }
}

/**
 * signTbs for a CA key behind a {@link DeviceSigner} (a PKCS#11 token, a TPM): the same
 * Certificate structure, the signature made by the backend. The TBS must carry
 * `signerAlgorithmId(signer.algorithm)` as its signature field (§4.1.2.3 requires the two to
 * match). ECDSA signers return DER Ecdsa-Sig-Value already; RSA signers the raw octets.
 */
export async function signTbsWith(tbs: Buffer, signer: DeviceSigner): Promise<Buffer> {
  const algorithmId = signerAlgorithmId(signer.algorithm);
  return sequence(tbs, algorithmId, bitString(await signer.sign(tbs)));
}

/** Reject validity windows that cannot be right before they reach a certificate. */
export function checkValidity(notBefore: Date, notAfter: Date): void {
  if (
    !(notBefore instanceof Date) ||
    !(notAfter instanceof Date) ||
    Number.isNaN(notBefore.getTime()) ||
    Number.isNaN(notAfter.getTime())
  ) {
    throw new TypeError('notBefore and notAfter must be valid Dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new TypeError(`notAfter (${notAfter.toISOString()}) must be after notBefore (${notBefore.toISOString()})`);
  }
}
