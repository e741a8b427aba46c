/** The azure join (wire.ts): an IMDS attested document over an issuer challenge, optionally a managed identity token. */
import type { JoinMethodDescriptor } from '../registry.js';

export const azureDescriptor: JoinMethodDescriptor = {
  name: 'azure',
  pathKeys: [],
  errorCodes: [
    'azure_no_rule',
    'azure_evidence_malformed',
    'azure_signature_invalid',
    'azure_signer_untrusted',
    'azure_signer_domain',
    'azure_nonce_mismatch',
    'azure_document_expired',
    'azure_token_required',
    'azure_token_mismatch',
    'azure_not_allowed',
  ],
  capabilities: { canReattest: true, challengeRound: true },
};
