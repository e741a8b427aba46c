/**
 * `gcp` join: a Compute Engine VM proves what it is with the identity token its metadata
 * server mints (Compute Engine docs, "Verifying the identity of instances"):
 *
 *   GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity
 *       ?audience=<the issuer's audience>&format=full        Metadata-Flavor: Google
 *
 * an RS256 JWT signed by Google (iss https://accounts.google.com), `aud` = the audience asked
 * for, valid one hour, and with `format=full` the claims
 *
 *   google.compute_engine: { project_id, project_number, zone, instance_id, instance_name,
 *                            instance_creation_timestamp }
 *   email, email_verified   the VM's service account
 *
 * One request, no challenge round; the evidence is `{ token }`. The token is a bearer
 * credential for its hour: anyone holding it can join as that VM (with the same stable
 * instance id) until it expires, which is why the audience must be unique to this issuer —
 * a token minted for another service is refused (`jwt_audience_mismatch`). docs/join-gcp.md.
 */
import { z } from 'zod';

export const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'] as const;
export const GOOGLE_JWKS_URL = 'https://www.googleapis.com/oauth2/v3/certs';
export const METADATA_IDENTITY_PATH = '/computeMetadata/v1/instance/service-accounts';

export const gcpEvidenceSchema = z.strictObject({
  token: z
    .string()
    .min(16)
    .max(16 * 1024),
});

export const computeEngineClaimsSchema = z.object({
  project_id: z.string().min(1).max(128),
  project_number: z.union([z.number(), z.string()]).optional(),
  zone: z.string().max(128).optional(),
  instance_id: z.union([z.string().regex(/^\d{1,32}$/), z.number().int().nonnegative()]),
  instance_name: z.string().max(128).optional(),
  instance_creation_timestamp: z.number().optional(),
});
export type ComputeEngineClaims = z.infer<typeof computeEngineClaimsSchema>;

/** The stable machine id of a Compute Engine VM (instance ids are unique and never reused). */
export function gcpMachineId(instanceId: string | number): string {
  return `gcp-${String(instanceId)}`;
}
