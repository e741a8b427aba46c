/**
 * An instance's last boot-state attestation as `sigil ctl instances show` presents it (issue #16;
 * docs/attest-interval.md), read from the facts server/ops/attestation.ts records:
 * `attestation` (the last record, good or bad) and `last_good_attestation_at`.
 *
 * Facts are JSON in the store: every field is checked for its type before it is shown, so a
 * record written by an older or newer issuer (or by hand) shows what it has and nothing wrong.
 */

export interface PcrDiffView {
  bank: string;
  pcr: number;
  expected: string[];
  got: string;
}

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

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const iso = (v: unknown): string | null => {
  const n = num(v);
  return n === null ? null : new Date(n).toISOString();
};

function diffOf(v: unknown): PcrDiffView[] {
  if (!Array.isArray(v)) return [];
  return v.flatMap((d): PcrDiffView[] => {
    if (!d || typeof d !== 'object') return [];
    const e = d as Record<string, unknown>;
    const pcr = num(e['pcr']);
    if (pcr === null) return [];
    const expected = Array.isArray(e['expected'])
      ? e['expected'].filter((x): x is string => typeof x === 'string')
      : [];
    return [{ bank: str(e['bank']) ?? '?', pcr, expected, got: str(e['got']) ?? '?' }];
  });
}

/** The view of `facts`, or null when the instance never attested its boot state. */
export function attestationView(facts: Record<string, unknown>): AttestationView | null {
  const r = facts['attestation'];
  if (!r || typeof r !== 'object' || Array.isArray(r)) return null;
  const a = r as Record<string, unknown>;
  return {
    at: iso(a['at']),
    result: a['ok'] === true ? 'ok' : 'refused',
    via: str(a['via']),
    profile: str(a['profile']),
    check: str(a['check']),
    message: str(a['message']),
    pcr_diff: diffOf(a['diff']),
    reset_count: num(a['reset_count']),
    restart_count: num(a['restart_count']),
    rebooted: typeof a['rebooted'] === 'boolean' ? a['rebooted'] : null,
    last_good_at: iso(facts['last_good_attestation_at']),
  };
}
