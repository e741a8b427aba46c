/** The tpm join (wire.ts): EK, credential activation, quote, TPM2_Certify of the identity key. */
import type { JoinMethodDescriptor } from '../registry.js';

export const tpmDescriptor: JoinMethodDescriptor = {
  name: 'tpm',
  pathKeys: ['event_log'],
  errorCodes: [
    'tpm_no_rule',
    'tpm_evidence_malformed',
    'ek_invalid',
    'ek_cert_missing',
    'ek_untrusted',
    'ek_revoked',
    'ek_crl_unavailable',
    'ek_not_allowed',
    'ak_attributes_invalid',
    'credential_mismatch',
    'quote_invalid',
    'quote_nonce_mismatch',
    'quote_signature_invalid',
    'pcr_digest_mismatch',
    'pcr_mismatch',
    'eventlog_invalid',
    'eventlog_replay_mismatch',
    'firmware_profile_mismatch',
    'firmware_profile_unknown',
    'clock_invalid',
    'key_not_tpm_resident',
    'certify_invalid',
    'certify_key_mismatch',
    'eventlog_required',
    'pcr_selection_changed',
  ],
  // Renewals prove their new TPM key with TPM2_Certify by the join's attestation key, and their
  // boot state with a quote by it (reattest.ts).
  capabilities: { canReattest: true, challengeRound: true, renewalKeyProof: true, reattest: true },
};
