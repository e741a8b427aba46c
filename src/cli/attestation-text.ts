/**
 * The last attestation of an instance as text, for `sigil ctl instances show` (issue #16): when,
 * the result and how it came (join, renew, attest), the firmware profile, the failed check with
 * the issuer's message, each PCR that differs (expected values of the profile, the value quoted)
 * and the boot facts (TPM resetCount/restartCount, rebooted since the previous attestation).
 */
import type { AttestationView } from '../server/admin/attestation-view.js';

/** Digests are long; a PCR line stays readable with the first 16 hex digits of each (enough to tell them apart). */
const short = (hex: string): string => (hex.length > 20 ? `${hex.slice(0, 16)}…` : hex);

export function attestationLines(a: AttestationView | null | undefined): string[] {
  if (!a) return ['attestation: none (its join rule names no firmware profile, or it has not attested yet)'];
  const head = `attestation: ${a.result} at ${a.at ?? '?'} via ${a.via ?? '?'}, profile ${a.profile ?? '-'}`;
  const lines = [head];
  if (a.result !== 'ok') lines.push(`  check:     ${a.check ?? '?'}${a.message ? ` — ${a.message}` : ''}`);
  for (const d of a.pcr_diff)
    lines.push(
      `  pcr ${`${d.bank}:${d.pcr}`.padEnd(9)} expected ${d.expected.length ? d.expected.map(short).join(' or ') : '(any)'}, got ${short(d.got)}`,
    );
  const boot = [
    a.reset_count !== null ? `reset_count ${a.reset_count}` : '',
    a.restart_count !== null ? `restart_count ${a.restart_count}` : '',
    a.rebooted !== null ? `rebooted ${a.rebooted ? 'yes' : 'no'}` : '',
  ].filter(Boolean);
  if (boot.length) lines.push(`  boot:      ${boot.join(', ')}`);
  lines.push(`  last good: ${a.last_good_at ?? 'never'}`);
  return lines;
}
