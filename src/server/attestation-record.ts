/**
 * Reading an attestation record back (issue #16 writes it to the instance's `facts.attestation`
 * and into the details of `attest`/`renew` audit rows), for every view of it: the fleet view's
 * machine page and `sigil ctl instances show` (admin/attestation-view.ts). Facts are JSON
 * written from agent evidence, so this reads them defensively: wrong types become "absent",
 * strings are capped, the diff is bounded — a hostile record can make the page say less, never
 * break it (and every string is escaped on output anyway).
 */
export interface PcrDiffView {
  bank: string;
  pcr: number;
  expected: string[];
  got: string;
}

export interface AttestationView {
  at: number | null;
  ok: boolean;
  via: string | null;
  profile: string | null;
  check: string | null;
  message: string | null;
  diff: PcrDiffView[];
  resetCount: number | null;
  restartCount: number | null;
  rebooted: boolean | null;
}

const MAX_DIFF_ROWS = 64;
const MAX_EXPECTED = 16;

const str = (v: unknown, max = 500): string | null => (typeof v === 'string' ? v.slice(0, max) : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `at` may be ms since the epoch or an ISO string. */
function time(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }
  return null;
}

/** A record, or undefined when `v` is not one (no `ok` boolean). */
export function readAttestation(v: unknown): AttestationView | undefined {
  if (!isObject(v) || typeof v['ok'] !== 'boolean') return undefined;
  const diff: PcrDiffView[] = [];
  if (Array.isArray(v['diff'])) {
    for (const d of v['diff'].slice(0, MAX_DIFF_ROWS)) {
      if (!isObject(d)) continue;
      const pcr = num(d['pcr']);
      if (pcr === null) continue;
      const expected = Array.isArray(d['expected'])
        ? d['expected']
            .slice(0, MAX_EXPECTED)
            .map((e) => str(e, 200))
            .filter((e): e is string => e !== null)
        : [];
      diff.push({ bank: str(d['bank'], 16) ?? '?', pcr, expected, got: str(d['got'], 200) ?? '?' });
    }
  }
  return {
    at: time(v['at']),
    ok: v['ok'],
    via: str(v['via'], 32),
    profile: str(v['profile'], 200),
    check: str(v['check'], 100),
    message: str(v['message'], 1000),
    diff,
    resetCount: num(v['reset_count']),
    restartCount: num(v['restart_count']),
    rebooted: typeof v['rebooted'] === 'boolean' ? v['rebooted'] : null,
  };
}

/** The record an audit row carries: `details.attestation`, or the details themselves. */
export function attestationOfAuditDetails(details: Record<string, unknown>): AttestationView | undefined {
  return readAttestation(details['attestation']) ?? readAttestation(details);
}
