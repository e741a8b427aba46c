/** The oidc join (wire.ts): a CI job's or a pod's OIDC token (GitHub, GitLab, CircleCI, Kubernetes, …). */
import type { JoinMethodDescriptor } from '../registry.js';

export const oidcDescriptor: JoinMethodDescriptor = {
  name: 'oidc',
  pathKeys: ['token_file'],
  errorCodes: ['oidc_no_rule', 'oidc_claims_not_allowed'],
  // The job or pod fetches a fresh token whenever it needs to join again.
  capabilities: { canReattest: true },
};
