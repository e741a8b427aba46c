/**
 * The gcp block of a join rule:
 *
 *   kind: join_rule
 *   name: gce
 *   spec:
 *     method: gcp
 *     bot: gw
 *     gcp:
 *       audience: "https://sigil.example.com"   # required; the agent asks Google for a token with it
 *       allow:                                   # required
 *         - project_id: my-project               # required in every entry, exact
 *           zone: "europe-west1-*"               # optional, value or list, globs allowed
 *           instance_name: "gw-*"
 *           service_account: "sigil-gw@my-project.iam.gserviceaccount.com"
 *       jwks_url: https://www.googleapis.com/oauth2/v3/certs   # optional (default); JWKS or Google's PEM map
 *       ca_file: /etc/sigil/proxy-ca.pem          # optional: extra CA for jwks_url
 *       fallback_jwks_file: /etc/sigil/google-certs.json   # optional: used when jwks_url cannot be fetched
 *       skew: 60s                                 # optional: clock skew for exp/iat (default 60 s, max 5 min)
 */
import { z } from 'zod';
import { exactSchema, patternSchema } from '../allow-match.js';
import { absolutePathField, durationField, httpsUrlField } from '../rule-fields.js';

export const gcpAllowEntrySchema = z.strictObject({
  project_id: exactSchema(/^[a-z0-9.:-]{1,100}$/, 'project_id is a GCP project id (no wildcards)'),
  zone: patternSchema.optional(),
  instance_name: patternSchema.optional(),
  instance_id: patternSchema.optional(),
  service_account: patternSchema.optional(),
});
export type GcpAllowEntry = z.infer<typeof gcpAllowEntrySchema>;

export const GCP_ALLOW_FIELDS: Record<string, string> = {
  project_id: 'gcp_project_id',
  zone: 'gcp_zone',
  instance_name: 'gcp_instance_name',
  instance_id: 'gcp_instance_id',
  service_account: 'gcp_service_account',
};

export const gcpRuleSchema = z.strictObject({
  audience: z.string().min(1).max(512),
  allow: z.array(gcpAllowEntrySchema).min(1, 'allow needs at least one entry (a project id at least)').max(1000),
  jwks_url: httpsUrlField.optional(),
  ca_file: absolutePathField.optional(),
  fallback_jwks_file: absolutePathField.optional(),
  skew: durationField.refine((s) => s <= 300, 'skew is at most 5m').optional(),
});
export type GcpRule = z.infer<typeof gcpRuleSchema>;
