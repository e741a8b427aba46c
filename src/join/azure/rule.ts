/**
 * The azure block of a join rule:
 *
 *   kind: join_rule
 *   name: azure-vms
 *   spec:
 *     method: azure
 *     bot: gw
 *     azure:
 *       ca_files: [/etc/ssl/certs/DigiCert_Global_Root_G2.pem]      # required: trust anchors
 *       intermediate_files: [/etc/sigil/azure-tls-issuing-cas.pem]  # optional: Microsoft Azure TLS issuing CAs
 *       signer_domains: [metadata.azure.com]                        # optional (default)
 *       skew: 5m                                                    # optional: for the document's timestamps
 *       managed_identity:                                           # optional: require and verify an MI token
 *         audience: "https://management.azure.com/"                 #   default
 *         jwks_url: "https://login.microsoftonline.com/common/discovery/v2.0/keys"   # default
 *         ca_file: /etc/sigil/proxy-ca.pem                          #   optional
 *       allow:                                                      # required
 *         - subscription_id: "00000000-0000-0000-0000-000000000000" # required in every entry, exact
 *           vm_id: "…"                                              # optional, value or list, globs
 *           tenant_id: "…"                                          # need managed_identity
 *           resource_group: "rg-edge-*"                             # need managed_identity (case-insensitive)
 */
import { z } from 'zod';
import { exactSchema, patternSchema } from '../allow-match.js';
import { absolutePathField, durationField, httpsUrlField } from '../rule-fields.js';

const lower = (p: string | string[]): string | string[] =>
  Array.isArray(p) ? p.map((s) => s.toLowerCase()) : p.toLowerCase();

export const azureAllowEntrySchema = z.strictObject({
  subscription_id: exactSchema(/^[0-9a-fA-F-]{36}$/, 'subscription_id is a subscription GUID (no wildcards)').transform(
    lower,
  ),
  vm_id: patternSchema.transform(lower).optional(),
  tenant_id: patternSchema.transform(lower).optional(),
  resource_group: patternSchema.transform(lower).optional(),
});
export type AzureAllowEntry = z.infer<typeof azureAllowEntrySchema>;

export const AZURE_ALLOW_FIELDS: Record<string, string> = {
  subscription_id: 'azure_subscription_id',
  vm_id: 'azure_vm_id',
  tenant_id: 'azure_tenant_id',
  resource_group: 'azure_resource_group',
};

export const azureRuleSchema = z
  .strictObject({
    ca_files: z
      .array(absolutePathField)
      .min(1, "ca_files needs the root of Azure's metadata certificates (DigiCert Global Root G2)")
      .max(16),
    intermediate_files: z.array(absolutePathField).max(16).optional(),
    signer_domains: z
      .array(z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, 'a DNS domain'))
      .min(1)
      .max(8)
      .optional(),
    skew: durationField.refine((s) => s <= 900, 'skew is at most 15m').optional(),
    managed_identity: z
      .strictObject({
        audience: z.string().min(1).max(512).optional(),
        jwks_url: httpsUrlField.optional(),
        ca_file: absolutePathField.optional(),
      })
      .optional(),
    allow: z
      .array(azureAllowEntrySchema)
      .min(1, 'allow needs at least one entry (a subscription id at least)')
      .max(1000),
  })
  .superRefine((r, ctx) => {
    if (
      r.managed_identity === undefined &&
      r.allow.some((e) => e.tenant_id !== undefined || e.resource_group !== undefined)
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['allow'],
        message: 'tenant_id and resource_group come from the managed identity token: add a managed_identity block',
      });
    }
  });
export type AzureRule = z.infer<typeof azureRuleSchema>;
