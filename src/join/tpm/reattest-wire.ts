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
 *     pcr_values  what PCR_Read returned for that selection, as in the join's answer
 *     event_log   the firmware's TCG log, gzip, base64: required after a reboot (the quote's
 *                 resetCount/restartCount differ from the last accepted attestation's), omitted
 *                 otherwise (the boot it measured was already judged)
 *
 * Encodings as in the join (wire.ts): TPMS_ATTEST and TPMT_SIGNATURE standard base64, PCR
 * digests lowercase hex.
 */
import { z } from 'zod';
import { b64 } from '../ek-wire.js';
import { MAX_EVENT_LOG_GZ_BYTES, pcrSelectionSchema, signedAttestSchema, tpmAnswerSchema } from './wire.js';

export const tpmReattestSchema = z.strictObject({
  quote: signedAttestSchema,
  pcr_values: tpmAnswerSchema.shape.pcr_values,
  event_log: b64(MAX_EVENT_LOG_GZ_BYTES, 'event_log').optional(),
});
export type TpmReattest = z.infer<typeof tpmReattestSchema>;

/**
 * What the tpm agent keeps from its join for later attestations (join state, agent settings
 * `tpm.attestation`): the selection to quote, and the clock counters of the last quote the
 * issuer accepted (a different pair means a reboot: send the event log).
 */
export const tpmAttestationStateSchema = z.strictObject({
  pcr_selection: pcrSelectionSchema,
  accepted: z.strictObject({ reset_count: z.number().int().min(0), restart_count: z.number().int().min(0) }).optional(),
  /** Counters of the last quote sent, promoted to `accepted` when that request succeeds. */
  sent: z.strictObject({ reset_count: z.number().int().min(0), restart_count: z.number().int().min(0) }).optional(),
});
export type TpmAttestationState = z.infer<typeof tpmAttestationStateSchema>;
