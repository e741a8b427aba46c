/**
 * The EK–AK binding's wire and rule pieces, shared by the tpm join and by x509 rules with
 * `require_tpm` (a DevID in a TPM): the same encodings on the wire (TPM2B structures and
 * signed attestations, base64) and the same EK trust options in a rule (ek_crl_files,
 * ek_public_hash), so both mean exactly the same thing in both methods.
 */
import * as z from '../util/zod-mini.js';

/** Standard base64 of at most `max` bytes. */
export function b64(max: number, what: string): z.ZodMiniString {
  return z
    .string()
    .check(
      z.maxLength(Math.ceil(max / 3) * 4, `${what} is at most ${max} bytes`),
      z.regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, `${what} must be standard base64`),
    );
}

/** A TPM2B_PUBLIC, base64. */
export const tpm2bPublicB64 = (what: string): z.ZodMiniString =>
  b64(1024, what).check(z.minLength(8, `${what} is empty`));

/** The EK certificate as read from the TPM's NV (DER, base64). */
export const ekCertB64 = b64(8 * 1024, 'ek_cert');

/** TPMS_ATTEST and its signature (a quote, a certification). */
export const signedAttestSchema = z.strictObject({ attest: b64(1024, 'attest'), signature: b64(1024, 'signature') });
export type SignedAttestWire = z.infer<typeof signedAttestSchema>;

/** MakeCredential's output, sent to the agent for ActivateCredential. */
export const credentialWireSchema = z.strictObject({
  blob: b64(1024, 'credential.blob'),
  secret: b64(1024, 'credential.secret'),
});

/** The secret ActivateCredential recovered. */
export const activatedB64 = b64(64, 'activated');

/** `sha256:<hex>` of the EK's SubjectPublicKeyInfo DER — the same value `openssl pkey -pubin -outform DER | sha256sum` gives. */
export const EK_HASH_RE = /^sha256:[0-9a-f]{64}$/;

const absolutePath = z
  .string()
  .check(
    z.minLength(2),
    z.maxLength(4096),
    z.regex(/^\//, 'file paths must be absolute (the issuer reads them when a machine joins)'),
  );

/** A rule's ek_crl_files (tpm rules and x509 require_tpm). */
export const ekCrlFilesSchema = z.optional(
  z
    .array(absolutePath)
    .check(z.minLength(1, 'ek_crl_files needs at least one CRL file; omit it instead'), z.maxLength(64)),
);

/** ek_crl_files revokes EK certificates, which only a rule with ek_ca_files checks. */
export const ekCrlNeedsCa = {
  check: (r: { ek_ca_files?: unknown; ek_crl_files?: unknown }): boolean =>
    r.ek_crl_files === undefined || r.ek_ca_files !== undefined,
  message:
    'ek_crl_files needs ek_ca_files: CRLs revoke EK certificates, and only a rule that trusts EKs by certificate (ek_ca_files) checks one (to shut out a TPM trusted by its EK hash, remove it from allow)',
};
