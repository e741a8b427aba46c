/**
 * What a renewal's or an interval attestation's quote is bound to (issue #16): its qualifying
 * data (TPM2_Quote extraData, Part 3 §18.4) is SHA-256 over a domain-separation label, the
 * operation, the request id and `extra` (a renewal: the SubjectPublicKeyInfo DER of the CSR's
 * new key). The issuer recomputes it from the request it is judging, so a quote made for one
 * request — an earlier renewal's, captured on the network — fails `quote_nonce_mismatch` in any
 * other, and a quote made for an interval attestation cannot stand in for a renewal (the label
 * and the op differ). Each field is length-prefixed: no two field lists hash the same bytes.
 */
import { createHash } from 'node:crypto';

const LABEL = 'sigil/attestation/v1';

export function attestationBinding(op: 'renew' | 'attest', requestId: string, extra: Buffer): Buffer {
  const h = createHash('sha256');
  for (const part of [Buffer.from(LABEL), Buffer.from(op), Buffer.from(requestId, 'utf8'), extra]) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(part.length);
    h.update(len).update(part);
  }
  return h.digest();
}

/** A renewal's binding: its request id and the SHA-256 of its CSR key's SubjectPublicKeyInfo DER. */
export function renewalBinding(requestId: string, csrSpkiDer: Buffer): Buffer {
  return attestationBinding('renew', requestId, createHash('sha256').update(csrSpkiDer).digest());
}
