/**
 * The `attest` operation (protocol v1, issue #16; docs/attest-interval.md): a joined agent proves
 * its boot state again, on an interval of its own (`attest_every` in agent.yaml), independent of
 * renewal. Signed by the agent's CURRENT identity key with its chain in x5c and naming that
 * signer, like `renew` and `credential`; the issuer judges the evidence with the instance's join
 * method against the join rule's firmware profiles, records the outcome in the instance's facts
 * and answers with that record (a failed attestation is a refusal that names the check).
 *
 * `evidence` is the join method's (tpm: a quote by the join's attestation key over the profile's
 * PCR selection, the PCR values, the event log after a reboot: join/tpm/). Its qualifying data
 * is bound to THIS request: attestationBinding('attest', request_id, {@link attestBindingExtra})
 * of server/ops/attestation.ts — so a quote from an earlier attestation or renewal, or one made
 * for another identity, does not verify here.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PROTOCOL_VERSION } from './messages.js';
import { namedSignerFields, requestIdSchema } from './requests.js';

export const attestRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('attest'),
  request_id: requestIdSchema,
  timestamp: z.number().int().positive(),
  ...namedSignerFields,
  /** Method-specific evidence; the instance's join method validates its shape (join/<method>/). */
  evidence: z.record(z.string(), z.unknown()),
});
export type AttestRequest = z.infer<typeof attestRequestSchema>;

/** What an accepted attestation is answered with (server/ops/attestation.ts AttestationRecord, on the wire). */
export interface AttestResult {
  instance_id: string;
  ok: true;
  /** When the issuer judged it (unix ms). */
  at: number;
  via: 'attest';
  /** The firmware profile the boot state matched (null: the rule names none). */
  profile: string | null;
  /** The TPM rebooted since the previous attestation (resetCount grew), when the method can tell. */
  rebooted?: boolean;
}

export const attestResultSchema = z.object({
  instance_id: z.string(),
  ok: z.literal(true),
  at: z.number(),
  via: z.literal('attest'),
  profile: z.string().nullable(),
  rebooted: z.boolean().optional(),
});

export const attestResponseSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('attest'),
  request_id: z.string(),
  issued_at: z.number(),
  result: attestResultSchema,
});

/**
 * The request-specific bytes of the binding: SHA-256 of the signing identity's
 * SubjectPublicKeyInfo (DER). The evidence is thereby tied to the key that signs the envelope,
 * so a quote a peer saw (an MQTT broker, another bot) cannot be wrapped in another identity's
 * request.
 */
export function attestBindingExtra(leafSpkiDer: Buffer): Buffer {
  return createHash('sha256').update(leafSpkiDer).digest();
}
