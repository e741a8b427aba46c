/** The gcp join (wire.ts): a Compute Engine instance identity token (a JWT signed by Google). */
import type { JoinMethodDescriptor } from '../registry.js';

export const gcpDescriptor: JoinMethodDescriptor = {
  name: 'gcp',
  pathKeys: [],
  errorCodes: ['gcp_no_rule', 'gcp_claims_missing', 'gcp_not_allowed'],
  capabilities: { canReattest: true },
};
