/**
 * An instance's last boot-state attestation as `sigil ctl instances show` presents it (issue #16;
 * docs/attest-interval.md), read from the facts server/ops/attestation.ts records:
 * `attestation` (the last record, good or bad) and `last_good_attestation_at`.
 *
 * Facts are JSON in the store: every field is checked for its type before it is shown, so a
 * record written by an older or newer issuer (or by hand) shows what it has and nothing wrong.
 */

import { readAttestation, type PcrDiffView } from '../attestation-record.js';

export type { PcrDiffView };

export interface AttestationView {
  at: string | null;
  result: 'ok' | 'refused';
  via: string | null;
  profile: string | null;
  /** The failed check (a refusal code such as pcr_mismatch), for a refused attestation. */
  check: string | null;
  message: string | null;
  pcr_diff: PcrDiffView[];
  reset_count: number | null;
  restart_count: number | null;
  rebooted: boolean | null;
  last_good_at: string | null;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The view of `facts`, or null when the instance never attested its boot state. */
export function attestationView(facts: Record<string, unknown>): AttestationView | null {
  // One defensive reader for every view of the record (../attestation-record.ts).
  const raw = facts['attestation'];
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return null;
  // A record whose `ok` is not a boolean (written by hand, or by another version) is shown as
  // refused, never as good.
  const a = readAttestation(raw) ?? readAttestation({ ...raw, ok: false });
  if (!a) return null;
  const lastGood = facts['last_good_attestation_at'];
  return {
    at: iso(a.at),
    result: a.ok ? 'ok' : 'refused',
    via: a.via,
    profile: a.profile,
    check: a.check,
    message: a.message,
    pcr_diff: a.diff,
    reset_count: a.resetCount,
    restart_count: a.restartCount,
    rebooted: a.rebooted,
    last_good_at: iso(typeof lastGood === 'number' && Number.isFinite(lastGood) ? lastGood : null),
  };
}
