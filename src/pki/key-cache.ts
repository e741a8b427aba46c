/**
 * Public keys as node:crypto KeyObjects, imported once and kept (issue #14). Renewal is a chain:
 * the key a renewal's CSR carries is the key the NEXT renewal's leaf carries and signs its JWS
 * with, so the issuer that verified the CSR already holds the KeyObject the next renewal needs.
 * Importing costs more than the verify it serves (OpenSSL 3's DER SPKI decoder: ~85 µs, a P-256
 * JWK import: ~45 µs, an ECDSA verify: ~45 µs on the dev machine).
 *
 * Why this cannot weaken a check: the cache only saves the import. It is keyed by the exact SPKI
 * bytes (not a hash of them, so nothing can alias), returns the same key the import would, and
 * every signature is still verified with it by the caller. The owner (IssuerContext) holds one
 * per issuer; the size is bounded (least recently used entries go first).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';

/** What parseCsr and the request authentication take: any way to get the key of an SPKI. */
export interface PublicKeyImporter {
  publicKey(spkiDer: Buffer): KeyObject;
}

/**
 * SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point: SEQUENCE { SEQUENCE {
 * id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) } (RFC 5480 §2). 26 bytes; then 0x04,
 * X (32) and Y (32): 91 bytes in all.
 */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const P256_SPKI_LEN = P256_SPKI_PREFIX.length + 65;

/**
 * Import an SPKI. A P-256 key goes through the JWK importer (half the cost of the DER decoder;
 * the point is still checked to lie on the curve, as with DER); anything else through DER.
 * Throws what createPublicKey throws.
 */
export function importSpki(spkiDer: Buffer): KeyObject {
  if (
    spkiDer.length === P256_SPKI_LEN &&
    spkiDer[P256_SPKI_PREFIX.length] === 0x04 &&
    P256_SPKI_PREFIX.equals(spkiDer.subarray(0, P256_SPKI_PREFIX.length))
  ) {
    const at = P256_SPKI_PREFIX.length + 1;
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: spkiDer.subarray(at, at + 32).toString('base64url'),
        y: spkiDer.subarray(at + 32, at + 64).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
}

/** A bounded SPKI → KeyObject cache (see the module comment). */
export class PublicKeyCache implements PublicKeyImporter {
  private readonly keys = new Map<string, KeyObject>();

  constructor(readonly maxEntries = 20_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
  }

  publicKey(spkiDer: Buffer): KeyObject {
    return this.keyFor(spkiDer.toString('latin1'), () => importSpki(spkiDer));
  }

  /**
   * The key kept under `id`, else `make()`'s, kept. For keys that do not arrive as an SPKI (a TPM
   * public area: attest/ak.ts AkKeys): `id` must stand for the exact key bytes, and must not
   * begin with "0" (an SPKI's 0x30, as {@link publicKey} keys them) so that the kinds never alias.
   * A `make` that throws keeps nothing.
   */
  keyFor(id: string, make: () => KeyObject): KeyObject {
    const hit = this.keys.get(id);
    if (hit) {
      // Most recently used last: Map keeps insertion order, so the first entry is the oldest.
      this.keys.delete(id);
      this.keys.set(id, hit);
      return hit;
    }
    const key = make();
    this.keys.set(id, key);
    if (this.keys.size > this.maxEntries) this.keys.delete(this.keys.keys().next().value as string);
    return key;
  }

  /**
   * Drop the key of `spkiDer`, when its owner has rotated to a new one (a renewal's presented
   * key: its successor came in the CSR). Keeps the cache at about one key per live identity
   * instead of its bound, so less stays on the heap; a later use only imports it again.
   */
  forget(spkiDer: Buffer): void {
    this.keys.delete(spkiDer.toString('latin1'));
  }

  get size(): number {
    return this.keys.size;
  }
}
