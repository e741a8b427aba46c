/**
 * The boot state of a tpm join, judged against the join rule's firmware profiles
 * (src/server/firmware, firmware-profiles/README.md).
 *
 * Where profiles come from: `sigil server start --firmware-profiles DIR` (which calls
 * {@link setFirmwareProfilesDir}), else the SIGIL_FIRMWARE_PROFILES_DIR environment variable,
 * else `firmware-profiles/` of the Sigil installation. The directory is re-read when a file in
 * it changes (name, size or mtime; looked at once a second at most), so a new profile needs no
 * restart.
 *
 * What is quoted: for each profile, its pinned PCRs plus the PCRs its event-log rules read
 * (secure_boot → 7, boot_loader_digests → 4, kernel_cmdline_contains → 8 and 12,
 * crtm_versions → 0), in the profile's bank; the rule's selection is the union over its
 * profiles (PCRs 0–7 of SHA-256 when that is empty).
 *
 * Order of checks, each with its code:
 *   eventlog_invalid          the event log (gzip) does not decompress or parse
 *   eventlog_replay_mismatch  replayed per quoted bank, a PCR the log extends differs from the
 *                             quoted value — checked for every log sent, before any profile
 *                             (a log that lies is refused even where no profile reads it)
 *   pcr_mismatch              a pinned PCR is missing or has another value (names the PCR,
 *                             expected and got)
 *   firmware_profile_mismatch an event-log rule fails (secure boot, boot loader, kernel
 *                             command line, CRTM version), or a required log is missing
 * When several profiles are named, the first that matches wins; when none does, the refusal is
 * the one of the profile that got furthest (and the message lists the others).
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { SigilError, type ErrorCode } from '../../errors.js';
import { evaluateProfile, loadFirmwareProfiles, type FirmwareProfile, type ProfileCheck, type ProfileMatch, type ProfileRefusal } from '../../server/firmware/index.js';
import { parseEventLog, replayEventLog, type ParsedLog } from '../../tpm/eventlog/index.js';
import { MAX_EVENT_LOG_BYTES, type PcrBankName, type PcrSelectionWire } from './wire.js';

let configuredDir: string | undefined;

/** Set by `sigil server start --firmware-profiles DIR`. */
export function setFirmwareProfilesDir(dir: string | undefined): void {
  configuredDir = dir === undefined ? undefined : resolve(dir);
}

/** firmware-profiles/ of the installation: three levels up from src/join/tpm (or dist/join/tpm). */
const INSTALL_DIR = fileURLToPath(new URL('../../../firmware-profiles/', import.meta.url));

export function firmwareProfilesDir(): string {
  return configuredDir ?? process.env.SIGIL_FIRMWARE_PROFILES_DIR ?? INSTALL_DIR;
}

let cache: { dir: string; stamp: string; checkedAt: number; profiles: Map<string, FirmwareProfile> } | undefined;
/** The directory is looked at (readdir + stat) at most this often. */
const RECHECK_MS = 1_000;

function dirStamp(dir: string): string {
  try {
    return readdirSync(dir)
      .filter((n) => /\.ya?ml$/i.test(n))
      .sort()
      .map((n) => {
        const st = statSync(join(dir, n));
        return `${n}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  } catch (e) {
    throw new SigilError('firmware_profile_unknown', `cannot read the firmware profile directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** The named profiles, in the rule's order; an unknown name or a broken directory is `firmware_profile_unknown`. */
export function resolveProfiles(names: readonly string[], ruleName: string): FirmwareProfile[] {
  const dir = firmwareProfilesDir();
  const now = Date.now();
  if (cache?.dir !== dir || now - cache.checkedAt >= RECHECK_MS) {
    const stamp = dirStamp(dir);
    if (cache?.dir !== dir || cache.stamp !== stamp) {
      try {
        cache = { dir, stamp, checkedAt: now, profiles: loadFirmwareProfiles(dir) };
      } catch (e) {
        cache = undefined;
        throw new SigilError('firmware_profile_unknown', `the firmware profiles in ${dir} do not load: ${(e as Error).message}`);
      }
    }
    cache.checkedAt = now;
  }
  const profiles = cache.profiles;
  return names.map((n) => {
    const p = profiles.get(n);
    if (!p) throw new SigilError('firmware_profile_unknown', `join_rule ${ruleName} names firmware profile "${n}", which is not in ${dir} (known: ${[...profiles.keys()].join(', ') || 'none'})`);
    return p;
  });
}

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
export function selectionFor(profiles: readonly FirmwareProfile[]): PcrSelectionWire {
  const byBank = new Map<PcrBankName, Set<number>>();
  for (const p of profiles) {
    const set = byBank.get(p.pcrBank) ?? new Set<number>();
    pcrsOf(p).forEach((n) => set.add(n));
    byBank.set(p.pcrBank, set);
  }
  const sel = [...byBank].filter(([, s]) => s.size > 0).map(([bank, s]) => ({ bank, pcrs: [...s].sort((a, b) => a - b) }));
  return sel.length > 0 ? sel : [{ bank: 'sha256', pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
}

/** Events a join's boot log may hold (parseEventLog's own limit, 100k, is for any log). */
export const MAX_JOIN_EVENTS = 10_000;

/** Gunzip and parse the event log the agent sent. */
export function readEventLog(gzB64: string): ParsedLog {
  let raw: Buffer;
  try {
    raw = gunzipSync(Buffer.from(gzB64, 'base64'), { maxOutputLength: MAX_EVENT_LOG_BYTES });
  } catch (e) {
    throw new SigilError('eventlog_invalid', `the event log is not gzip data within ${MAX_EVENT_LOG_BYTES} bytes: ${(e as Error).message}`);
  }
  try {
    // A boot log has tens to hundreds of events (measured logs of real machines: 60-600); 100k
    // tiny events gzip to 3 KB and cost ~200 ms and ~48 MiB to parse (test/fuzz).
    return parseEventLog(raw, { maxEvents: MAX_JOIN_EVENTS });
  } catch (e) {
    if (e instanceof SigilError) throw new SigilError('eventlog_invalid', e.message);
    throw e;
  }
}

export type QuotedPcrs = Map<PcrBankName, Map<number, Buffer>>;

/** Every quoted PCR the log extends must equal its replayed value, in every quoted bank. */
export function checkReplay(log: ParsedLog, quoted: QuotedPcrs): void {
  for (const [bank, values] of quoted) {
    let replayed: Map<number, Buffer>;
    try {
      replayed = replayEventLog(log, bank);
    } catch (e) {
      if (e instanceof SigilError) throw new SigilError('eventlog_replay_mismatch', `the event log cannot be replayed in the quoted ${bank} bank: ${e.message}`);
      throw e;
    }
    for (const [pcr, value] of [...values].sort(([a], [b]) => a - b)) {
      const r = replayed.get(pcr);
      if (r !== undefined && !r.equals(value)) {
        throw new SigilError('eventlog_replay_mismatch', `the event log replays ${bank} PCR ${pcr} to ${r.toString('hex')}, but the quote says ${value.toString('hex')}`);
      }
    }
  }
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
const CHECK_ORDER: readonly ProfileCheck[] = ['pcr_missing', 'pcr_value', 'eventlog_missing', 'eventlog_replay', 'eventlog_event', 'secure_boot', 'boot_loader_digest', 'kernel_cmdline', 'crtm_version'];

export class BootRefusal extends SigilError {
  constructor(readonly refusal: ProfileRefusal, others: readonly ProfileRefusal[]) {
    const also = others.length > 0 ? ` (also tried: ${others.map((o) => o.message).join('; ')})` : '';
    super(CHECK_CODE[refusal.check], refusal.message + also);
  }
}

/** The first profile the quoted PCRs (and the log) satisfy; throws a {@link BootRefusal} otherwise. */
export function judgeBoot(profiles: readonly FirmwareProfile[], quoted: QuotedPcrs, log: ParsedLog | undefined): ProfileMatch {
  const refusals: ProfileRefusal[] = [];
  for (const p of profiles) {
    const r = evaluateProfile(p, { pcrs: quoted.get(p.pcrBank) ?? new Map(), ...(log ? { eventLog: log } : {}) });
    if (r.ok) return r;
    refusals.push(r);
  }
  const rank = (r: ProfileRefusal): number => CHECK_ORDER.indexOf(r.check);
  const best = refusals.reduce((a, b) => (rank(b) > rank(a) ? b : a));
  throw new BootRefusal(best, refusals.filter((r) => r !== best));
}
