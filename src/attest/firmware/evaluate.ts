/**
 * Judge quoted PCR values (and, optionally, the boot event log) against a firmware profile.
 *
 * The caller has already verified the quote (../quote.ts: signature, nonce, PCR digest);
 * `pcrs` are the values it signed, in the profile's bank. The log, if any, can only be a
 * {@link VerifiedEventLog}: replayed against those values (../eventlog.ts), so its digests are
 * the TPM's. Order of checks, first failure wins:
 *   1. pinned PCRs: each must be quoted and be one of the accepted values;
 *   2. event log (when the profile has an `event_log` section):
 *      a. present, unless `require: false`;
 *      b. replayed in the profile's bank (`eventlog_replay`: verified against another bank);
 *      c. the events a rule reads have data bound to their digest (`eventlog_event`, see
 *         src/tpm/eventlog/facts.ts) and sit in quoted PCRs (an event in a PCR the quote does not
 *         cover is vouched for by nothing);
 *      d. the rules.
 * A refusal names the check, the PCR, the expected values and what was found.
 */
import { extractBootFacts, HASH_ALGS, type BootFacts } from '../../tpm/eventlog/index.js';
import { VerifiedEventLog } from '../eventlog.js';
import { crtmVersionText } from './crtm.js';
import type { FirmwareProfile } from './schema.js';

export interface ProfileEvidence {
  /** Quoted PCR values in the profile's bank. */
  pcrs: ReadonlyMap<number, Buffer>;
  /** The boot log, replayed against the quote: nothing else is accepted (../eventlog.ts). */
  eventLog?: VerifiedEventLog;
}

export type ProfileCheck =
  | 'pcr_missing'
  | 'pcr_value'
  | 'eventlog_missing'
  | 'eventlog_replay'
  | 'eventlog_event'
  | 'secure_boot'
  | 'boot_loader_digest'
  | 'kernel_cmdline'
  | 'crtm_version';

export interface ProfileMatch {
  ok: true;
  profile: string;
  matched: {
    /** Pinned PCRs and the (accepted) quoted value of each. */
    pcrs: Record<string, string>;
    /** What the log established; absent when the profile has no event_log or none was sent (require: false). */
    eventLog?: {
      replayedPcrs: number[];
      secureBoot?: 'enabled' | 'disabled';
      bootLoaderDigests?: string[];
      kernelCmdlines?: string[];
      crtmVersions?: string[];
    };
  };
}

export interface ProfileRefusal {
  ok: false;
  profile: string;
  check: ProfileCheck;
  pcr?: number;
  /** Log position of the offending event (tpm2_eventlog's EventNum). */
  event?: number;
  expected?: string[];
  got?: string;
  message: string;
}

export type ProfileResult = ProfileMatch | ProfileRefusal;

type Refusal = Omit<ProfileRefusal, 'ok' | 'profile'>;

export function evaluateProfile(profile: FirmwareProfile, evidence: ProfileEvidence): ProfileResult {
  const refuse = (r: Refusal): ProfileRefusal => ({
    ok: false,
    profile: profile.name,
    ...r,
    message: `firmware profile ${profile.name}: ${r.message}`,
  });
  const size = HASH_ALGS[profile.pcrBank].size;
  const matched: ProfileMatch['matched'] = { pcrs: {} };

  for (const [pcr, accepted] of profile.pcrs) {
    const got = evidence.pcrs.get(pcr);
    if (!got)
      return refuse({
        check: 'pcr_missing',
        pcr,
        expected: accepted,
        message: `PCR ${pcr} is pinned but not in the quote`,
      });
    const hex = got.toString('hex');
    if (got.length !== size) {
      return refuse({
        check: 'pcr_value',
        pcr,
        expected: accepted,
        got: hex,
        message: `PCR ${pcr} is ${got.length} bytes, not a ${profile.pcrBank} value (${size} bytes)`,
      });
    }
    if (!accepted.includes(hex)) {
      return refuse({
        check: 'pcr_value',
        pcr,
        expected: accepted,
        got: hex,
        message: `PCR ${pcr} is ${hex}, expected ${accepted.length === 1 ? accepted[0] : `one of ${accepted.join(', ')}`}`,
      });
    }
    matched.pcrs[String(pcr)] = hex;
  }

  if (!profile.eventLog) return { ok: true, profile: profile.name, matched };
  const log = evidence.eventLog;
  if (log !== undefined && !VerifiedEventLog.is(log))
    throw new TypeError('evaluateProfile takes only a VerifiedEventLog (attest/eventlog.ts verifyEventLog)');
  if (!log) {
    if (!profile.eventLog.require) return { ok: true, profile: profile.name, matched };
    return refuse({ check: 'eventlog_missing', message: 'the profile requires the boot event log and none was sent' });
  }
  const r = checkEventLog(profile, log);
  if (!r.ok) return refuse(r.refusal);
  matched.eventLog = r.established;
  return { ok: true, profile: profile.name, matched };
}

type Established = NonNullable<ProfileMatch['matched']['eventLog']>;

function checkEventLog(
  profile: FirmwareProfile,
  log: VerifiedEventLog,
): { ok: true; established: Established } | { ok: false; refusal: Refusal } {
  const bank = profile.pcrBank;
  if (!log.hasBank(bank)) {
    return {
      ok: false,
      refusal: {
        check: 'eventlog_replay',
        message: `the event log was not replayed against quoted ${bank} PCRs, so none of its ${bank} digests is proven`,
      },
    };
  }
  const established: Established = { replayedPcrs: log.replayedPcrs(bank) };

  const f = extractBootFacts(log.log, bank);
  if (!f.ok) {
    const refusal: Refusal = { check: 'eventlog_event', pcr: f.event.pcr, event: f.event.index, message: f.message };
    if (f.expected !== undefined) refusal.expected = [f.expected];
    if (f.got !== undefined) refusal.got = f.got;
    return { ok: false, refusal };
  }
  const refusal = checkRules(profile, f.facts, log, established);
  return refusal ? { ok: false, refusal } : { ok: true, established };
}

/** An event a rule reads is evidence only if the quote covers its PCR (and so, after replay, its digest). */
function unquoted(
  check: ProfileCheck,
  pcr: number,
  event: number,
  log: VerifiedEventLog,
  bank: FirmwareProfile['pcrBank'],
): Refusal | undefined {
  if (log.covers(bank, pcr)) return undefined;
  return {
    check,
    pcr,
    event,
    message: `event ${event} extends PCR ${pcr}, which the quote does not cover, so the log cannot vouch for it`,
  };
}

function checkRules(
  profile: FirmwareProfile,
  facts: BootFacts,
  log: VerifiedEventLog,
  out: Established,
): Refusal | undefined {
  const rules = profile.eventLog!.rules;
  const bank = profile.pcrBank;

  if (rules.secureBoot !== 'any') {
    const sb = facts.secureBoot;
    if (!sb)
      return {
        check: 'secure_boot',
        pcr: 7,
        expected: [rules.secureBoot],
        message: 'the event log does not measure the SecureBoot variable',
      };
    const bad = unquoted('secure_boot', 7, sb.event, log, bank);
    if (bad) return bad;
    const state = sb.enabled ? 'enabled' : 'disabled';
    if (state !== rules.secureBoot)
      return {
        check: 'secure_boot',
        pcr: 7,
        event: sb.event,
        expected: [rules.secureBoot],
        got: state,
        message: `secure boot is ${state}, the profile requires ${rules.secureBoot}`,
      };
    out.secureBoot = state;
  }

  if (rules.bootLoaderDigests) {
    const allowed = rules.bootLoaderDigests;
    if (facts.bootApplications.length === 0)
      return {
        check: 'boot_loader_digest',
        pcr: 4,
        expected: allowed,
        message: 'the event log measures no boot application into PCR 4',
      };
    for (const app of facts.bootApplications) {
      const bad = unquoted('boot_loader_digest', 4, app.event, log, bank);
      if (bad) return bad;
      if (!allowed.includes(app.digest)) {
        return {
          check: 'boot_loader_digest',
          pcr: 4,
          event: app.event,
          expected: allowed,
          got: app.digest,
          message: `boot application ${app.path ?? '(no path)'} (event ${app.event}) has digest ${app.digest}, which the profile does not allow`,
        };
      }
    }
    out.bootLoaderDigests = facts.bootApplications.map((a) => a.digest);
  }

  if (rules.kernelCmdlineContains) {
    if (facts.kernelCmdlines.length === 0)
      return {
        check: 'kernel_cmdline',
        expected: rules.kernelCmdlineContains,
        message: 'the event log measures no kernel command line (PCR 8 kernel_cmdline or PCR 12)',
      };
    for (const c of facts.kernelCmdlines) {
      const bad = unquoted('kernel_cmdline', c.pcr, c.event, log, bank);
      if (bad) return bad;
      const missing = rules.kernelCmdlineContains.find((want) => !containsWords(c.text, want));
      if (missing !== undefined) {
        return {
          check: 'kernel_cmdline',
          pcr: c.pcr,
          event: c.event,
          expected: [missing],
          got: c.text,
          message: `the kernel command line (event ${c.event}) lacks "${missing}"`,
        };
      }
    }
    out.kernelCmdlines = facts.kernelCmdlines.map((c) => c.text);
  }

  if (rules.crtmVersions) {
    if (facts.crtmVersions.length === 0)
      return {
        check: 'crtm_version',
        pcr: 0,
        expected: rules.crtmVersions,
        message: 'the event log has no EV_S_CRTM_VERSION in PCR 0',
      };
    const seen: string[] = [];
    for (const v of facts.crtmVersions) {
      const bad = unquoted('crtm_version', 0, v.event, log, bank);
      if (bad) return bad;
      // Read again from the event's data (bound to its digest by extractBootFacts): trimmed, and a
      // GUID-form version as its GUID text (./crtm.ts), as the profile's values are.
      const data = log.log.events.find((e) => e.index === v.event)?.data;
      const text = data !== undefined ? crtmVersionText(data) : v.text.trim();
      if (!rules.crtmVersions.includes(text)) {
        return {
          check: 'crtm_version',
          pcr: 0,
          event: v.event,
          expected: rules.crtmVersions,
          got: text,
          message: `CRTM version "${text}" is not one the profile accepts`,
        };
      }
      seen.push(text);
    }
    out.crtmVersions = seen;
  }
  return undefined;
}

/** Whole-word, in-order containment: `quiet` matches `ro quiet splash`, not `quieter`. */
export function containsWords(cmdline: string, want: string): boolean {
  const hay = cmdline.split(/\s+/).filter(Boolean);
  const needle = want.split(/\s+/).filter(Boolean);
  if (needle.length === 0) return true;
  for (let i = 0; i + needle.length <= hay.length; i++) {
    if (needle.every((w, j) => hay[i + j] === w)) return true;
  }
  return false;
}
