/** The x509 join (wire.ts): a device certificate (IDevID) and a signature over an issuer challenge. */
import type { JoinMethodDescriptor } from '../registry.js';

export const x509Descriptor: JoinMethodDescriptor = {
  name: 'x509',
  pathKeys: ['cert', 'chain', 'key', 'pin_file'],
  errorCodes: [
    'x509_no_rule',
    'x509_chain_malformed',
    'x509_untrusted_ca',
    'x509_chain_too_long',
    'x509_cert_signature_invalid',
    'x509_signature_algorithm',
    'x509_cert_expired',
    'x509_cert_not_yet_valid',
    'x509_not_ca',
    'x509_path_length_exceeded',
    'x509_key_usage',
    'x509_name_constraints',
    'x509_critical_extension',
    'x509_weak_key',
    'x509_revoked',
    'x509_crl_unavailable',
    'x509_not_allowed',
    'x509_proof_invalid',
    'device_not_registered',
    'x509_tpm_binding_invalid',
    'x509_ek_mismatch',
  ],
  capabilities: { canReattest: true, challengeRound: true },
};
