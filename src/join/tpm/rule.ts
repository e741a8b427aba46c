/**
 * The tpm block of a join rule (the tpm entry's ruleSchema, so `sigil ctl apply` refuses a
 * malformed one):
 *
 *   kind: join_rule
 *   name: racks
 *   spec:
 *     method: tpm
 *     bot: gw
 *     tpm:
 *       ek_ca_files: [/etc/sigil/tpm-ca/root.pem, /etc/sigil/tpm-ca/intermediate.pem]
 *       ek_crl_files: [/etc/sigil/tpm-ca/intermediate.crl]
 *       allow: [ { ek_public_hash: "sha256:…" } ]
 *       firmware_profiles: [lab-gateway-v1]
 *
 * EK trust, both given → both must hold:
 *   ek_ca_files  the EK certificate (from the TPM's NV) must chain to a certificate in these
 *                files; every certificate in them is a trust anchor, so list the manufacturer's
 *                intermediate CAs too (TPMs do not carry them). A rule with ek_ca_files needs a
 *                certificate: a TPM without one is refused (`ek_cert_missing`).
 *   ek_crl_files CRLs (RFC 5280 §5) of the CAs in ek_ca_files: the EK certificate's issuer must
 *                be covered by a current one and the certificate must not be on it (`ek_revoked`;
 *                stale or unusable: `ek_crl_unavailable`, fail closed). Only with ek_ca_files:
 *                an EK admitted by hash alone has no certificate to revoke.
 *   allow        the EK's public key hash must be listed (`sha256:` + hex SHA-256 of the EK's
 *                SubjectPublicKeyInfo DER). Alone, it admits TPMs without an EK certificate.
 * firmware_profiles: the boot must match one of these profiles (PCR values, event-log rules);
 * the PCRs quoted are the union of what they name. Without it, the quote still proves the TPM
 * is live and its PCRs are recorded, but no boot state is required.
 *
 * Continuous attestation (issue #16, docs/continuous-attestation.md), only with firmware_profiles:
 * every renewal (and every interval `attest`) carries a fresh quote judged against the profiles
 * as they are then.
 *   on_attestation_failure  refuse (default): that renewal is refused, the next one with a
 *                           matching boot succeeds; lock: the instance is locked too (its
 *                           certificates go on the CRL; `sigil ctl unlock` lifts it)
 *   max_attestation_age     renewals are refused (`attestation_stale`) when the last good
 *                           attestation is older (1m…30d); absent: no age gate
 */
import { z } from 'zod';
import { PROFILE_NAME_RE } from '../../attest/firmware/index.js';
import { EK_HASH_RE, ekCrlFilesSchema, ekCrlNeedsCa } from '../ek-wire.js';
import { durationField } from '../rule-fields.js';

/** Bounds of max_attestation_age, seconds: below a minute every renewal races its own quote; 30 days is no gate. */
export const MIN_ATTESTATION_AGE_S = 60;
export const MAX_ATTESTATION_AGE_S = 30 * 86400;

const absolutePath = z
  .string()
  .min(2)
  .max(4096)
  .regex(/^\//, 'file paths must be absolute (the issuer reads them when a machine joins)');

const ekHash = z
  .string()
  .transform((s) => s.trim().toLowerCase())
  .refine(
    (s) => EK_HASH_RE.test(s),
    'ek_public_hash must be sha256:<64 lowercase hex digits> (see docs/join-tpm.md for how to compute it)',
  );

export const tpmRuleSchema = z
  .strictObject({
    ek_ca_files: z.array(absolutePath).min(1, 'ek_ca_files needs at least one CA file').max(32).optional(),
    ek_crl_files: ekCrlFilesSchema,
    allow: z
      .array(z.strictObject({ ek_public_hash: ekHash }))
      .min(1, 'an empty allow list admits nobody; omit it instead')
      .max(100_000)
      .optional(),
    firmware_profiles: z
      .array(
        z
          .string()
          .regex(PROFILE_NAME_RE, 'a firmware profile name is 1-63 lowercase letters, digits, ".", "_" and "-"'),
      )
      .min(1)
      .max(32)
      .optional(),
    on_attestation_failure: z.enum(['refuse', 'lock']).optional(),
    max_attestation_age: durationField
      .refine(
        (s) => s >= MIN_ATTESTATION_AGE_S && s <= MAX_ATTESTATION_AGE_S,
        `max_attestation_age must be between ${MIN_ATTESTATION_AGE_S / 60}m and ${MAX_ATTESTATION_AGE_S / 86400}d`,
      )
      .optional(),
  })
  // First, so a rule with ek_crl_files and nothing else is told what ek_crl_files lacks.
  .refine(ekCrlNeedsCa.check, { message: ekCrlNeedsCa.message, path: ['ek_crl_files'] })
  .refine(
    (r) => r.firmware_profiles !== undefined || (r.on_attestation_failure ?? r.max_attestation_age) === undefined,
    {
      message:
        'on_attestation_failure and max_attestation_age need firmware_profiles (there is no boot state to re-attest)',
    },
  )
  .refine((r) => r.ek_ca_files !== undefined || r.allow !== undefined, {
    message: 'a tpm rule needs ek_ca_files, allow, or both (otherwise any TPM, even a software one, could join)',
  });
export type TpmRule = z.infer<typeof tpmRuleSchema>;
