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
 *       require_tpm:                             # optional: the device key must sit in a TPM
 *         ek_ca_files: [/etc/sigil/tpm-ca.pem]   #   whose EK chains to these (tpm join semantics),
 *         ek_crl_files: [/etc/sigil/tpm-ca.crl]  #   is not revoked by these (needs ek_ca_files),
 *         allow: [ { ek_public_hash: "sha256:…" } ]  # and/or is listed; and, for registered
 *                                                #   devices, is the EK the factory recorded
 */
import { z } from 'zod';
import { EK_HASH_RE, ekCrlFilesSchema, ekCrlNeedsCa } from '../ek-wire.js';
import { allowEntrySchema } from './allow.js';

const absolutePath = z
  .string()
  .min(2)
  .max(4096)
  .regex(/^\//, 'file paths must be absolute (the issuer reads them when a device joins)');

export const DEFAULT_MAX_INTERMEDIATES = 3;

/**
 * DevID in a TPM (tpm-check.ts): the EK trust of a tpm join rule — ek_ca_files, ek_crl_files
 * and allow mean exactly what they mean there (join/tpm/rule.ts, join/ek-wire.ts; checked by join/ek-trust.ts) —
 * without firmware_profiles, since this join quotes no PCRs.
 */
export const requireTpmSchema = z
  .strictObject({
    ek_ca_files: z.array(absolutePath).min(1, 'ek_ca_files needs at least one CA file').max(32).optional(),
    ek_crl_files: ekCrlFilesSchema,
    allow: z
      .array(
        z.strictObject({
          ek_public_hash: z
            .string()
            .transform((s) => s.trim().toLowerCase())
            .refine((s) => EK_HASH_RE.test(s), 'ek_public_hash must be sha256:<64 hex digits>'),
        }),
      )
      .min(1, 'an empty allow list admits nobody; omit it instead')
      .max(100_000)
      .optional(),
  })
  .refine(ekCrlNeedsCa.check, { message: ekCrlNeedsCa.message, path: ['ek_crl_files'] });
export type RequireTpm = z.infer<typeof requireTpmSchema>;

export const x509RuleSchema = z
  .strictObject({
    ca_files: z.array(absolutePath).min(1, 'ca_files needs at least one CA file').max(32),
    crl_files: z.array(absolutePath).max(64).optional(),
    allow: z.array(allowEntrySchema).max(1000).optional(),
    registered_only: z.boolean().optional(),
    max_intermediates: z.number().int().min(0).max(4).optional(),
    require_tpm: requireTpmSchema.optional(),
  })
  .refine(
    (r) =>
      r.require_tpm === undefined ||
      r.require_tpm.ek_ca_files !== undefined ||
      r.require_tpm.allow !== undefined ||
      r.registered_only === true,
    {
      message:
        'require_tpm needs ek_ca_files, allow, or registered_only: true (the EK recorded in the manifest); otherwise any TPM, even a software one, would do',
      path: ['require_tpm'],
    },
  );
export type X509Rule = z.infer<typeof x509RuleSchema>;
