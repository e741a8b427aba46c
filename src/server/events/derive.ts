/**
 * Which audit rows are events (./event.ts), and what they say. Only rows about one instance:
 *
 *   lock / unlock (outcome ok) of an instance       → instance_locked / instance_unlocked
 *   a renewal refused `generation_mismatch` that locked the instance (the automatic lock of a
 *   stale generation: renewal writes the refusal, not a lock row; server/ops/renew.ts)
 *                                                   → instance_locked, cause generation_mismatch
 *   a join, renewal or attestation of a known instance refused by an attestation check
 *                                                   → attestation_failed, with the check's code
 *   the system lock of a failed attestation under on_attestation_failure: lock (a `lock` row
 *   written with the refusal, server/ops/attestation.ts)
 *                                                   → instance_locked, cause attestation_failed
 *
 * certificate_revoked comes from the CRL's changes, not from a row (./publisher.ts). A bot lock
 * is not an instance event (it pauses a fleet and revokes nothing: docs/crl.md).
 */
import type { AuditRecord } from '../store/types.js';
import type { EventFact } from './event.js';

/**
 * The refusal codes that mean "this machine's attested state no longer checks out": the boot
 * state (quote, PCRs, event log, firmware profile, TPM clock) and the device certificate's
 * revocation (x509, re-checked at renewal). The seam for continuous attestation: a check added
 * for renewal-time or interval attestation adds its code here.
 */
export const ATTESTATION_FAILURE_CODES: ReadonlySet<string> = new Set([
  'pcr_mismatch',
  'pcr_digest_mismatch',
  'quote_invalid',
  'quote_nonce_mismatch',
  'quote_signature_invalid',
  'eventlog_invalid',
  'eventlog_replay_mismatch',
  'firmware_profile_mismatch',
  'clock_invalid',
  'eventlog_required',
  'x509_revoked',
  // issue #16's renewal-time checks, when they are their own codes
  'pcr_value',
  'eventlog_replay',
  'secure_boot',
]);

/** Operations whose refusal can be an attestation failure of a known instance. */
const ATTESTING_ACTIONS: ReadonlySet<string> = new Set(['join', 'renew', 'attest']);

/** The events one audit row is, usually none. `lockedNow`: whether the instance is locked now (store read). */
export async function eventsOfRow(
  row: AuditRecord,
  lockedNow: (instanceId: string) => Promise<boolean>,
): Promise<EventFact[]> {
  const instanceId = row.instanceId;
  if (instanceId === null) return [];
  const base = {
    time: new Date(row.at).toISOString(),
    instance_id: instanceId,
    bot: row.bot,
    audit_seq: row.seq,
    idSource: row.hash,
  };
  const d = row.details;
  if ((row.action === 'lock' || row.action === 'unlock') && row.outcome === 'ok') {
    const reason = typeof d['reason'] === 'string' ? d['reason'] : null;
    return [
      {
        ...base,
        type: row.action === 'lock' ? 'instance_locked' : 'instance_unlocked',
        data: {
          by: row.actor,
          ...(row.action === 'lock' ? { reason } : {}),
          // The lock a failed attestation makes under on_attestation_failure: lock (server/ops/attestation.ts).
          ...(row.action === 'lock' && typeof d['cause'] === 'string' ? { cause: d['cause'] } : {}),
          ...(row.action === 'lock' && d['pcr_diff'] !== undefined ? { pcr_diff: d['pcr_diff'] } : {}),
        },
      },
    ];
  }
  if (row.outcome !== 'refused' || row.code === null) return [];
  // Only the automatic lock: the same code without a lock is a concurrent renewal overtaken.
  if (row.code === 'generation_mismatch' && (await lockedNow(instanceId)))
    return [
      {
        ...base,
        type: 'instance_locked',
        data: { by: 'system', cause: 'generation_mismatch', reason: message(d) },
      },
    ];
  if (ATTESTING_ACTIONS.has(row.action) && ATTESTATION_FAILURE_CODES.has(row.code))
    return [
      {
        ...base,
        type: 'attestation_failed',
        data: {
          op: row.action,
          check: row.code,
          method: row.method,
          message: message(d),
          ...(d['pcr_diff'] !== undefined ? { pcr_diff: d['pcr_diff'] } : {}),
        },
      },
    ];
  return [];
}

function message(d: Record<string, unknown>): string | null {
  return typeof d['message'] === 'string' ? d['message'] : null;
}
