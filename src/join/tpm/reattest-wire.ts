/**
 * Fresh boot-state evidence after the join (issue #16; docs/continuous-attestation.md): the
 * `attestation` member of a renew request, and of an interval `attest` request, for an instance
 * whose tpm join rule names firmware profiles.
 *
 *   attestation: { quote, pcr_values, event_log? }
 *     quote       TPM2_Quote by the AK the instance joined with (its public area is the instance
 *                 fact `ak_public`) over the PCR selection the join's challenge named
 *                 (`pcr_selection`, kept by the agent), qualifyingData = attestationBinding(op,
 *                 request_id, extra) (attest/binding.ts; renew: extra = the CSR key's SPKI DER)
 *     pcr_values  the values of the quoted PCRs, as in the join's answer: read by PCR_Read for this
 *                 quote or for the agent's last one (fresh-evidence.ts quoteKept) — either way
 *                 they must hash to the quoted digest, which is all the issuer believes
 *     event_log   the firmware's TCG log, gzip, base64: required after a reboot (the quote's
 *                 resetCount/restartCount differ from the last accepted attestation's), omitted
 *                 otherwise (the boot it measured was already judged)
 *
 * Encodings as in the join (wire.ts): TPMS_ATTEST and TPMT_SIGNATURE standard base64, PCR
 * digests lowercase hex.
 */
import { parseWith } from '../../protocol/messages.js';
import * as z from '../../util/zod-mini.js';
import { b64 } from '../ek-wire.js';
import {
  MAX_EVENT_LOG_GZ_BYTES,
  PCR_BANK_NAMES,
  pcrSelectionSchema,
  signedAttestSchema,
  tpmAnswerSchema,
} from './wire.js';

export const tpmReattestSchema = z.strictObject({
  quote: signedAttestSchema,
  pcr_values: tpmAnswerSchema.shape.pcr_values,
  event_log: z.optional(b64(MAX_EVENT_LOG_GZ_BYTES, 'event_log')),
});
export type TpmReattest = z.infer<typeof tpmReattestSchema>;

/**
 * The evidence of a renewal or interval attestation, as {@link tpmReattestSchema} parses it
 * (`tpm_evidence_malformed` otherwise). Evidence that is well-formed in every point the schema
 * checks is taken as it is, without zod: in a renewal, among the issuer's other schemas, that
 * parse took ~40 µs of the ~240 µs the issuer spends on a quote (bench/tpm-renew.ts). Anything
 * else — malformed, or merely unusual (another prototype, an explicit undefined) — goes through
 * the schema, which accepts or refuses it with its own message. So the fast path accepts a
 * subset of what the schema accepts, never more (test/unit/tpm/reattest-wire.test.ts compares
 * the two on every malformation the schema names).
 */
export function readReattest(evidence: unknown): TpmReattest {
  return wellFormed(evidence)
    ? evidence
    : parseWith(tpmReattestSchema, evidence, 'tpm_evidence_malformed', 'attestation');
}

// The schema's rules, restated (ek-wire.ts b64, wire.ts hexDigest and pcr_values).
const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX_DIGEST_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/;
const b64Max = (bytes: number): number => Math.ceil(bytes / 3) * 4;
const MAX_ATTEST_B64 = b64Max(1024);
const MAX_EVENT_LOG_B64 = b64Max(MAX_EVENT_LOG_GZ_BYTES);
const MAX_PCR_VALUES = 96;

/** A plain object (JSON's kind) with exactly `required` and at most `optional` as own keys, none undefined. */
function plainWith(v: unknown, required: readonly string[], optional?: string): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  const o = v as Record<string, unknown>;
  let n = 0;
  for (const k of required) {
    if (!Object.hasOwn(o, k) || o[k] === undefined) return false;
    n++;
  }
  if (optional !== undefined && Object.hasOwn(o, optional)) {
    if (o[optional] === undefined) return false;
    n++;
  }
  return Object.keys(o).length === n;
}

const isB64 = (v: unknown, max: number): boolean => typeof v === 'string' && v.length <= max && B64_RE.test(v);

function wellFormed(v: unknown): v is TpmReattest {
  if (!plainWith(v, ['quote', 'pcr_values'], 'event_log')) return false;
  const q = v.quote;
  if (!plainWith(q, ['attest', 'signature']) || !isB64(q.attest, MAX_ATTEST_B64) || !isB64(q.signature, MAX_ATTEST_B64))
    return false;
  const values = v.pcr_values;
  if (!Array.isArray(values) || values.length < 1 || values.length > MAX_PCR_VALUES) return false;
  for (const e of values as unknown[]) {
    if (!plainWith(e, ['bank', 'pcr', 'digest'])) return false;
    if (!(PCR_BANK_NAMES as readonly unknown[]).includes(e.bank)) return false;
    const pcr = e.pcr;
    if (typeof pcr !== 'number' || !Number.isInteger(pcr) || pcr < 0 || pcr > 23) return false;
    if (typeof e.digest !== 'string' || !HEX_DIGEST_RE.test(e.digest)) return false;
  }
  return v.event_log === undefined || isB64(v.event_log, MAX_EVENT_LOG_B64);
}

/** A TPM clock counter (resetCount, restartCount: TPMS_CLOCK_INFO, Part 2 §10.11.1). */
const counter = z.int().check(z.minimum(0));

/**
 * What the tpm agent keeps from its join for later attestations (join state, agent settings
 * `tpm.attestation`): the selection to quote, and the clock counters of the last quote the
 * issuer accepted (a different pair means a reboot: send the event log).
 */
export const tpmAttestationStateSchema = z.strictObject({
  pcr_selection: pcrSelectionSchema,
  accepted: z.optional(z.strictObject({ reset_count: counter, restart_count: counter })),
  /** Counters of the last quote sent, promoted to `accepted` when that request succeeds. */
  sent: z.optional(z.strictObject({ reset_count: counter, restart_count: counter })),
});
export type TpmAttestationState = z.infer<typeof tpmAttestationStateSchema>;
