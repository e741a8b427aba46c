/**
 * The boot state of an attestation, judged against a join rule's firmware profiles
 * (firmware-profiles/README.md).
 *
 * What is quoted: for each profile, its pinned PCRs plus the PCRs its event-log rules read
 * (secure_boot → 7, boot_loader_digests → 4, kernel_cmdline_contains → 8 and 12,
 * crtm_versions → 0), in the profile's bank; the rule's selection is the union over its
 * profiles (PCRs 0–7 of SHA-256 when that is empty).
 *
 * Order of checks, each with its code (the event log was replayed before: ../eventlog.ts):
 *   pcr_mismatch              a pinned PCR is missing or has another value (names the PCR,
 *                             expected and got)
 *   firmware_profile_mismatch an event-log rule fails (secure boot, boot loader, kernel
 *                             command line, CRTM version), or a required log is missing
 * When several profiles are named, the first that matches wins; when none does, the refusal is
 * the one of the profile that got furthest (and the message lists the others).
 */
import { SigilError, type ErrorCode } from '../../errors.js';
import type { PcrBank } from '../../tpm/eventlog/index.js';
import type { VerifiedEventLog } from '../eventlog.js';
import type { QuotedPcrs } from '../quote.js';
import { evaluateProfile, type ProfileCheck, type ProfileMatch, type ProfileRefusal } from './evaluate.js';
import type { FirmwareProfile } from './schema.js';

function pcrsOf(p: FirmwareProfile): number[] {
  const out = new Set(p.pcrs.keys());
  const rules = p.eventLog?.rules;
  if (rules) {
    if (rules.secureBoot !== 'any') out.add(7);
    if (rules.bootLoaderDigests) out.add(4);
    if (rules.kernelCmdlineContains) [8, 12].forEach((n) => out.add(n));
    if (rules.crtmVersions) out.add(0);
  }
  return [...out];
}

/** The PCRs to quote for these profiles (see the file comment). */
export function selectionFor(profiles: readonly FirmwareProfile[]): Array<{ bank: PcrBank; pcrs: number[] }> {
  const byBank = new Map<PcrBank, Set<number>>();
  for (const p of profiles) {
    const set = byBank.get(p.pcrBank) ?? new Set<number>();
    pcrsOf(p).forEach((n) => set.add(n));
    byBank.set(p.pcrBank, set);
  }
  const sel = [...byBank]
    .filter(([, s]) => s.size > 0)
    .map(([bank, s]) => ({ bank, pcrs: [...s].sort((a, b) => a - b) }));
  return sel.length > 0 ? sel : [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
}

const CHECK_CODE: Record<ProfileCheck, ErrorCode> = {
  pcr_missing: 'pcr_mismatch',
  pcr_value: 'pcr_mismatch',
  eventlog_missing: 'firmware_profile_mismatch',
  eventlog_replay: 'eventlog_replay_mismatch',
  eventlog_event: 'eventlog_replay_mismatch',
  secure_boot: 'firmware_profile_mismatch',
  boot_loader_digest: 'firmware_profile_mismatch',
  kernel_cmdline: 'firmware_profile_mismatch',
  crtm_version: 'firmware_profile_mismatch',
};
const CHECK_ORDER: readonly ProfileCheck[] = [
  'pcr_missing',
  'pcr_value',
  'eventlog_missing',
  'eventlog_replay',
  'eventlog_event',
  'secure_boot',
  'boot_loader_digest',
  'kernel_cmdline',
  'crtm_version',
];

export class BootRefusal extends SigilError {
  constructor(
    readonly refusal: ProfileRefusal,
    others: readonly ProfileRefusal[],
  ) {
    const also = others.length > 0 ? ` (also tried: ${others.map((o) => o.message).join('; ')})` : '';
    super(CHECK_CODE[refusal.check], refusal.message + also);
  }
}

/** The first profile the quoted PCRs (and the verified log) satisfy; throws a {@link BootRefusal} otherwise. */
export function judgeBoot(
  profiles: readonly FirmwareProfile[],
  quoted: QuotedPcrs,
  log: VerifiedEventLog | undefined,
): ProfileMatch {
  const refusals: ProfileRefusal[] = [];
  for (const p of profiles) {
    const r = evaluateProfile(p, { pcrs: quoted.get(p.pcrBank) ?? new Map(), ...(log ? { eventLog: log } : {}) });
    if (r.ok) return r;
    refusals.push(r);
  }
  const rank = (r: ProfileRefusal): number => CHECK_ORDER.indexOf(r.check);
  const best = refusals.reduce((a, b) => (rank(b) > rank(a) ? b : a));
  throw new BootRefusal(
    best,
    refusals.filter((r) => r !== best),
  );
}
