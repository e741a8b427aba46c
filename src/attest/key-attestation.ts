/**
 * Renewal-time key attestation: proof that a renewal's new key is TPM-resident, so the renewed
 * certificate is recorded `key_storage: tpm, exportable: false` like the joined one. The renew
 * request may carry
 *
 *   key_attestation: { key_public, certify: { attest, signature } }
 *
 * key_public is the new key's TPM2B_PUBLIC; certify is TPM2_Certify (Part 3 §18.2) of that key
 * by the AK the instance joined with (its public area is the instance fact `ak_public`), with
 * qualifyingData = SHA-256(request_id) — so the certification belongs to this request and no
 * other. Checked as the join's certification is: the AK (./ak.ts: ak_attributes_invalid), the
 * certification (./certify.ts: certify_invalid, certify_key_mismatch) and the key's attributes
 * and CSR key (./key.ts: key_not_tpm_resident, certify_key_mismatch). Without key_attestation
 * the new certificate is recorded software/exportable, whatever `key_storage` the request claims.
 *
 * The agent's half (TPM2_Certify with the kept AK) is join/tpm/key-attestation.ts.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';
import { parseWith } from '../protocol/messages.js';
import { AkKeys } from './ak.js';
import { verifyCertify } from './certify.js';
import { checkIdentityKey } from './key.js';
import { parsePublic, parseSignedAttest } from './structures.js';
import * as z from '../util/zod-mini.js';

/** Standard base64 of at most `max` bytes. */
const b64 = (max: number, what: string): z.ZodMiniString =>
  z
    .string()
    .check(
      z.maxLength(Math.ceil(max / 3) * 4, `${what} is at most ${max} bytes`),
      z.regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, `${what} must be standard base64`),
    );

export const keyAttestationSchema = z.strictObject({
  key_public: z.string().check(z.minLength(8), z.maxLength(2048)),
  certify: z.strictObject({ attest: b64(1024, 'attest'), signature: b64(1024, 'signature') }),
});
export type KeyAttestation = z.infer<typeof keyAttestationSchema>;

/** The qualifying data of a renewal key attestation: SHA-256 of the request id (UTF-8). */
export function renewalQualifyingData(requestId: string): Buffer {
  return createHash('sha256').update(requestId, 'utf8').digest();
}

/**
 * Issuer side: throws the refusal, or returns when the attestation proves the CSR's key
 * (`csrSpki`, DER) is in the TPM of the instance's AK. `aks`: the issuer's AK memo (./ak.ts).
 */
export function verifyKeyAttestation(
  raw: unknown,
  instanceFacts: Record<string, unknown>,
  csrSpki: Buffer,
  requestId: string,
  aks: AkKeys = new AkKeys(1),
): void {
  const att = parseWith(keyAttestationSchema, raw, 'tpm_evidence_malformed', 'key_attestation');
  const akText = instanceFacts.ak_public;
  if (typeof akText !== 'string') {
    throw new SigilError(
      'certify_invalid',
      'key_attestation needs the attestation key the instance joined with, and this instance did not join with the tpm method',
    );
  }
  const ak = aks.checked(akText, 'the instance attestation key', 'internal');
  const key = parsePublic(att.key_public, 'key_attestation.key_public');
  const certify = parseSignedAttest(att.certify, 'renewal key attestation', 'certify_invalid');
  verifyCertify(certify, ak.public, key, renewalQualifyingData(requestId), 'renewal key attestation', ak.key);
  checkIdentityKey(key, csrSpki);
}
