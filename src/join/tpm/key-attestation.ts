/**
 * Proof that a renewal's new key is TPM-resident, so the renewed certificate is recorded
 * `key_storage: tpm, exportable: false` like the joined one. The renew request may carry
 *
 *   key_attestation: { key_public, certify: { attest, signature } }
 *
 * key_public is the new key's TPM2B_PUBLIC; certify is TPM2_Certify of that key by the AK the
 * instance joined with (its public area is the instance fact `ak_public`), with
 * qualifyingData = SHA-256(request_id) — so the certification belongs to this request and no
 * other. The issuer checks it as it checks the join's certification (attest.ts:
 * certify_invalid, certify_key_mismatch, key_not_tpm_resident) and that key_public is the
 * CSR's key. Without key_attestation the new certificate is recorded software/exportable,
 * whatever `key_storage` the request claims.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { SigilError } from '../../errors.js';
import type { TpmSigner } from '../../keystore/tpm.js';
import { OWNER_PARENT, withParent, withTpm } from '../../keystore/tpm-access.js';
import { parseWith } from '../../protocol/messages.js';
import type { KeyBlob } from '../../tpm/tpm.js';
import { checkAk, checkIdentityKey, verifyCertify } from './attest.js';
import { encodePublic, encodeSignedAttest, parsePublic, parseSignedAttest } from './structures.js';
import { signedAttestSchema } from './wire.js';

export const keyAttestationSchema = z.strictObject({
  key_public: z.string().min(8).max(2048),
  certify: signedAttestSchema,
});
export type KeyAttestation = z.infer<typeof keyAttestationSchema>;

/** The qualifying data of a renewal key attestation: SHA-256 of the request id (UTF-8). */
export function renewalQualifyingData(requestId: string): Buffer {
  return createHash('sha256').update(requestId, 'utf8').digest();
}

/** Agent side: the AK (a blob under the SRK, kept from the join) certifies the renewal's new key. */
export async function attestRenewalKey(o: { ak: KeyBlob; key: TpmSigner; requestId: string }): Promise<KeyAttestation> {
  const tcti = o.key.ref.tcti;
  const certify = await withTpm(tcti, async (tpm) => {
    const ak = await withParent(tpm, tcti, OWNER_PARENT, (srk) => tpm.load(srk, o.ak));
    return tpm.withTransient(ak, (loaded) => o.key.loadWith(tpm, (key) => tpm.certify(key, loaded, renewalQualifyingData(o.requestId))));
  });
  return { key_public: encodePublic(o.key.blob.public), certify: encodeSignedAttest(certify) };
}

/**
 * Issuer side: throws the refusal, or returns when the attestation proves the CSR's key is in
 * the TPM of the instance's AK.
 */
export function verifyKeyAttestation(raw: unknown, instanceFacts: Record<string, unknown>, csrSpki: Buffer, requestId: string): void {
  const att = parseWith(keyAttestationSchema, raw, 'tpm_evidence_malformed', 'key_attestation');
  const akText = instanceFacts.ak_public;
  if (typeof akText !== 'string') {
    throw new SigilError('certify_invalid', 'key_attestation needs the attestation key the instance joined with, and this instance did not join with the tpm method');
  }
  const ak = parsePublic(akText, 'the instance attestation key', 'internal');
  checkAk(ak);
  const key = parsePublic(att.key_public, 'key_attestation.key_public');
  const certify = parseSignedAttest(att.certify, 'renewal key attestation', 'certify_invalid');
  verifyCertify(certify, ak, key, renewalQualifyingData(requestId), 'renewal key attestation');
  checkIdentityKey(key, csrSpki);
}
