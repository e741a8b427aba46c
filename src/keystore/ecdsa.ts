/**
 * ECDSA signature encodings. Tokens (PKCS#11 CKM_ECDSA, PKCS#11 v2.40 §2.3.1) and TPMs return
 * the fixed-width concatenation r || s; X.509, CSRs and Sigil's Signer contract want the DER
 * ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480 §2.2.3, RFC 3279 §2.2.3).
 */
import { integer, sequence } from '../pki/der.js';

/** r || s (each half the length, big-endian, unsigned) → DER ECDSA-Sig-Value. */
export function rawEcdsaToDer(raw: Buffer): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0)
    throw new TypeError(`raw ECDSA signature must have an even, non-zero length (got ${raw.length})`);
  const n = raw.length / 2;
  // der.integer(Buffer) treats the bytes as unsigned: strips leading zeros, adds 0x00 if the top bit is set.
  return sequence(integer(raw.subarray(0, n)), integer(raw.subarray(n)));
}
