/**
 * The request schemas of protocol v1's identity operations (./messages.ts has the answers): what
 * the issuer validates a join or renew request against, and the fields the other operations'
 * messages reuse (the request id, the named signer). Apart from messages.ts because an agent
 * builds requests and never validates its own: module-level schemas cost the daemon memory for as
 * long as it runs (issue #19, docs/performance.md "Agent footprint").
 */
import * as z from '../util/zod-mini.js';
import { PROTOCOL_VERSION } from './messages.js';

/** Request ids are chosen by the agent and make requests idempotent. */
export const requestIdSchema = z
  .string()
  .check(z.regex(/^[A-Za-z0-9_-]{16,64}$/, 'request_id must be 16-64 characters of [A-Za-z0-9_-]'));

const pemSchema = z.string().check(z.minLength(1), z.maxLength(16 * 1024));

/**
 * The agent's package version (src/version.ts), recorded in the instance's facts and shown on the
 * fleet view (issue #18). A claim of the sender, never used for a decision: bounded and printable
 * ASCII only, so it cannot carry markup-sized payloads or control characters into facts and pages.
 * Optional: agents from before it are accepted as ever.
 */
export const AGENT_VERSION_MAX = 64;
export const agentVersionSchema = z
  .string()
  .check(
    z.regex(/^[\x20-\x7e]+$/, 'agent_version must be printable ASCII'),
    z.minLength(1),
    z.maxLength(AGENT_VERSION_MAX),
  );

export const joinRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('join'),
  request_id: requestIdSchema,
  timestamp: z.int().check(z.positive()),
  method: z.string().check(z.regex(/^[a-z0-9_]{1,32}$/)),
  /** PKCS#10 of the new identity key, PEM. The envelope is signed by that same key. */
  csr: pemSchema,
  ttl_s: z.optional(z.int().check(z.positive())),
  /** Method-specific evidence; each method validates its own shape (join/<method>/wire.ts). */
  evidence: z.record(z.string(), z.unknown()),
  /** Where the agent keeps the key; unproven hardware claims are recorded as exportable. */
  key_storage: z.optional(z.enum(['software', 'tpm', 'pkcs11'])),
  /** PKCS#10 of a software key for an MQTT transport certificate (server/ops/transport-cert.ts), PEM. */
  transport_csr: z.optional(pemSchema),
  agent_version: z.optional(agentVersionSchema),
});
export type JoinRequest = z.infer<typeof joinRequestSchema>;

/**
 * Who a request signed by an identity (renew, credential) claims to come from: the instance and
 * the serial of the certificate in its x5c. The issuer refuses a payload whose signer differs
 * (`signer_mismatch`, server/ops/authenticate.ts), so a payload seen on the way (an MQTT broker,
 * a log) cannot be re-signed by another identity to collect its answer (issue #11).
 */
export const namedSignerFields = {
  instance_id: z.string().check(z.minLength(1), z.maxLength(256)),
  serial: z.string().check(z.regex(/^[0-9a-f]{1,64}$/, 'serial must be lower-case hex')),
};

export const renewRequestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  op: z.literal('renew'),
  request_id: requestIdSchema,
  timestamp: z.int().check(z.positive()),
  ...namedSignerFields,
  /** PKCS#10 of a NEW key; the envelope is signed by the CURRENT key (x5c = current chain). */
  csr: pemSchema,
  ttl_s: z.optional(z.int().check(z.positive())),
  key_storage: z.optional(z.enum(['software', 'tpm', 'pkcs11'])),
  /**
   * Proof that the new key is hardware-resident (tpm: TPM2_Certify of it by the instance's AK,
   * join/tpm/key-attestation.ts, which validates the inner shape). Without it the new
   * certificate is recorded as a software, exportable key.
   */
  key_attestation: z.optional(z.record(z.string(), z.unknown())),
  /**
   * Fresh boot-state evidence (issue #16), for instances whose join rule names firmware profiles:
   * tpm: a quote bound to this request (attest/binding.ts renewalBinding), the PCR values, the
   * event log after a reboot (join/tpm/reattest-wire.ts validates the inner shape).
   */
  attestation: z.optional(z.record(z.string(), z.unknown())),
  /** As in a join: a new transport key's CSR, answered with `transport_chain`. */
  transport_csr: z.optional(pemSchema),
  agent_version: z.optional(agentVersionSchema),
});
export type RenewRequest = z.infer<typeof renewRequestSchema>;
