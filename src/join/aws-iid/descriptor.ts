/** The aws_iid join (wire.ts): an EC2 instance identity document and a binding key. */
import type { JoinMethodDescriptor } from '../registry.js';

export const awsIidDescriptor: JoinMethodDescriptor = {
  name: 'aws_iid',
  pathKeys: ['binding_key'],
  errorCodes: [
    'aws_no_rule',
    'aws_evidence_malformed',
    'aws_region_unknown',
    'aws_certificate_invalid',
    'aws_signature_invalid',
    'aws_binding_proof_invalid',
    'aws_instance_key_mismatch',
    'aws_document_too_old',
    'aws_not_allowed',
  ],
  capabilities: { canReattest: true },
};
