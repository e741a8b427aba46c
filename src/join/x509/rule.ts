/**
 * The x509 block of a join rule (registered with join/rules.ts, so `sigil ctl apply` refuses
 * a malformed one):
 *
 *   kind: join_rule
 *   name: factory
 *   spec:
 *     method: x509
 *     bot: gw
 *     x509:
 *       ca_files: [/etc/sigil/factory-ca.pem]   # trust anchors (PEM bundle or DER), absolute paths
 *       crl_files: [/etc/sigil/factory.crl]      # optional, PEM or DER
 *       allow: [ { subject_cn: "gw-*" } ]        # optional (allow.ts)
 *       registered_only: true                    # optional: only devices imported from a manifest
 *       max_intermediates: 3                     # optional, 0..4 (default 3)
 */
import { z } from 'zod';
import { registerRuleSchema } from '../rules.js';
import { allowEntrySchema } from './allow.js';

const absolutePath = z.string().min(2).max(4096).regex(/^\//, 'file paths must be absolute (the issuer reads them when a device joins)');

export const DEFAULT_MAX_INTERMEDIATES = 3;

export const x509RuleSchema = z.strictObject({
  ca_files: z.array(absolutePath).min(1, 'ca_files needs at least one CA file').max(32),
  crl_files: z.array(absolutePath).max(64).optional(),
  allow: z.array(allowEntrySchema).max(1000).optional(),
  registered_only: z.boolean().optional(),
  max_intermediates: z.number().int().min(0).max(4).optional(),
});
export type X509Rule = z.infer<typeof x509RuleSchema>;

registerRuleSchema('x509', x509RuleSchema);
