/**
 * The issuer half of continuous attestation for tpm instances (issue #16;
 * docs/continuous-attestation.md; the wire form is reattest-wire.ts). A renewal, or an interval
 * attestation, of an instance whose join rule names firmware profiles carries a fresh quote by
 * the AK the instance joined with. Checked, in order, each with its code:
 *
 *   evidence shape (tpm_evidence_malformed, thrown: not a judgement of the machine)
 *   → the quote: TPMS_ATTEST of type QUOTE (quote_invalid), qualifying data = the binding of THIS
 *     request (quote_nonce_mismatch: a quote of an earlier request replayed), signed by the
 *     instance's AK, fact `ak_public` (quote_signature_invalid)
 *   → the PCR selection is the rule's current one (pcr_selection_changed, thrown: the rule's
 *     profiles changed since the join; the agent must join again to learn the new selection)
 *   → the reported values hash to the quoted digest (pcr_digest_mismatch)
 *   → the TPM clock, when reported safe, is not behind the last accepted one (clock_invalid:
 *     the TPM state was rolled back or cloned); after a reboot it may trail by one NV update
 *     interval of the TPM's Clock (~70 min), which a power loss explains (attest/clock.ts)
 *   → reboot detection: resetCount/restartCount differ from the last accepted attestation's
 *     (counters of one AK compare, attest/clock.ts). After a reboot, when a profile reads the
 *     event log, the log is required (eventlog_required) and must replay against the quote
 *     (eventlog_invalid, eventlog_replay_mismatch)
 *   → the boot against the rule's CURRENT profiles (pcr_mismatch, firmware_profile_mismatch),
 *     with the PCR diff. Without a reboot and without a log, the event-log rules' earlier verdict
 *     carries over only while every PCR the log covers still has the value that verdict judged
 *     and the profile it matched is still the rule's; otherwise the log is required again.
 *
 * A failed check is a verdict (ok: false, with the error and the diff), which the host records
 * and applies the rule's on_attestation_failure to (server/ops/attestation.ts).
 */
import { AkKeys } from '../../attest/ak.js';
import { checkClockSinceAccepted } from '../../attest/clock.js';
import { readEventLog, verifyEventLog, type VerifiedEventLog } from '../../attest/eventlog.js';
import {
  BootRefusal,
  judgeBoot,
  type FirmwareProfile,
  type FirmwareProfiles,
  type ProfileMatch,
} from '../../attest/firmware/index.js';
import {
  bankOf,
  checkPcrDigest,
  selectionKey,
  selectionText,
  verifyQuote,
  type PcrSelection,
  type QuoteAttest,
  type QuotedPcrs,
} from '../../attest/quote.js';
import { parseSignedAttest } from '../../attest/structures.js';
import { SigilError } from '../../errors.js';
import { TPM_ST } from '../../tpm/constants.js';
import { describeSelection } from '../../tpm/structures/pcr.js';
import type { JoinRenewPort, JoinRule } from '../port.js';
import type { AttestationPolicy, PcrDiffEntry, ReattestInput, ReattestObserved, ReattestVerdict } from '../types.js';
import { pcrFacts, reportedPcrs } from './pcrs.js';
import { readReattest } from './reattest-wire.js';
import type { TpmRule } from './rule.js';
import { MAX_EVENT_LOG_BYTES } from './wire.js';

/** Whether any profile judges the boot log (has an `event_log` section, required or not). */
export function logNeeded(profiles: readonly FirmwareProfile[]): boolean {
  return profiles.some((p) => p.eventLog !== undefined);
}

async function ruleOf(facts: Record<string, unknown>, port: JoinRenewPort): Promise<JoinRule<TpmRule> | undefined> {
  const name = facts.tpm_rule;
  if (typeof name !== 'string') return undefined;
  return (await port.rules<TpmRule>()).find((r) => r.name === name);
}

/**
 * The policy of the instance's join rule, when it must attest: the rule still exists and names
 * firmware profiles, and the instance's join recorded an attestation (instances joined before
 * issue #16 have none, and their agents do not quote: they attest from their next join on).
 */
export async function tpmAttestationPolicy(
  facts: Record<string, unknown>,
  port: JoinRenewPort,
): Promise<AttestationPolicy | undefined> {
  const rule = await ruleOf(facts, port);
  if (!rule?.config.firmware_profiles || facts.attestation === undefined || facts.attestation === null)
    return undefined;
  return {
    rule: rule.name,
    // Handed back to tpmReattest in the same request: the rule is read and parsed once (the
    // second time was about a sixth of the issuer's time for a quote, bench/tpm-renew.ts --cpu-prof).
    detail: rule,
    onFailure: rule.config.on_attestation_failure ?? 'refuse',
    maxAgeMs: rule.config.max_attestation_age !== undefined ? rule.config.max_attestation_age * 1000 : undefined,
  };
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

export async function tpmReattest(
  input: ReattestInput,
  port: JoinRenewPort,
  firmware: FirmwareProfiles,
  aks: AkKeys = new AkKeys(1),
): Promise<ReattestVerdict> {
  const ev = readReattest(input.evidence);
  const facts = input.instanceFacts;
  const rule = (input.policy?.detail as JoinRule<TpmRule> | undefined) ?? (await ruleOf(facts, port));
  if (!rule?.config.firmware_profiles)
    throw new SigilError('internal', 'reattest called for an instance whose rule names no firmware profile');
  // The profiles and their selection, derived once per rule and profile directory (profiles.ts).
  const {
    profiles,
    selection,
    selectionKey: ruleSelectionKey,
  } = firmware.resolved(rule.config.firmware_profiles, rule.name);
  if (typeof facts.ak_public !== 'string')
    throw new SigilError('internal', 'a tpm instance without the ak_public fact cannot attest');
  const ak = aks.checked(facts.ak_public, 'the instance attestation key', 'internal');

  const observed: ReattestObserved = { profile: null };
  const fail = (error: unknown, diff?: PcrDiffEntry[]): ReattestVerdict => {
    if (!(error instanceof SigilError)) throw error;
    return { ...observed, ok: false, error, ...(diff && diff.length > 0 ? { diff } : {}) };
  };

  const quote = parseSignedAttest(ev.quote, 'quote', 'quote_invalid');
  // The quote's own selection first, so that a changed rule (not the machine) is told apart.
  const a = quote.attest.value;
  const pcrSelect = a.type === TPM_ST.ATTEST_QUOTE ? a.attested.pcrSelect : [];
  // A bank Sigil does not replay is left out here, so verifyQuote refuses it (quote_invalid).
  const quotedSelection: PcrSelection = describeSelection(pcrSelect).flatMap((b) => {
    const bank = bankOf(b.hash);
    return bank ? [{ bank, pcrs: [...b.pcrs] }] : [];
  });
  let q: QuoteAttest;
  try {
    q = verifyQuote(quote, ak.public, input.binding, quotedSelection, ak.key);
  } catch (e) {
    return fail(e);
  }
  if (selectionKey(quotedSelection) !== ruleSelectionKey)
    throw new SigilError(
      'pcr_selection_changed',
      `the quote covers ${selectionText(quotedSelection)}, but join_rule ${rule.name}'s firmware profiles now select ${selectionText(selection)}: the agent must join again to learn the new selection`,
    );
  observed.resetCount = q.clockInfo.resetCount;
  observed.restartCount = q.clockInfo.restartCount;
  const lastReset = num(facts.tpm_reset_count);
  const lastRestart = num(facts.tpm_restart_count);
  // No counters recorded (should not happen after a #16 join): treat as a reboot, the safe side.
  const rebooted = lastReset !== q.clockInfo.resetCount || lastRestart !== q.clockInfo.restartCount;
  observed.rebooted = rebooted;

  let quoted: QuotedPcrs;
  try {
    quoted = reportedPcrs(ev.pcr_values, selection);
    checkPcrDigest(quote, q, quoted);
  } catch (e) {
    return fail(e);
  }

  const clockMs = Number(q.clockInfo.clock);
  // Within one boot Clock only grows; after a reboot it may trail by one NV update interval.
  try {
    checkClockSinceAccepted(q.clockInfo, num(facts.tpm_clock_ms), rebooted);
  } catch (e) {
    return fail(e);
  }

  let log: VerifiedEventLog | undefined;
  const needLog = logNeeded(profiles);
  if (needLog && ev.event_log !== undefined) {
    try {
      log = verifyEventLog(readEventLog(ev.event_log, MAX_EVENT_LOG_BYTES), quoted);
    } catch (e) {
      return fail(e);
    }
  }
  if (needLog && log === undefined && rebooted)
    return fail(
      new SigilError(
        'eventlog_required',
        `the TPM rebooted since this instance's last accepted attestation (its reset/restart counters changed) and join_rule ${rule.name}'s firmware profiles read the event log: the new boot's log must be sent`,
      ),
    );

  let match: ProfileMatch;
  try {
    match =
      log === undefined && needLog ? carriedOver(profiles, quoted, facts, rule.name) : judgeBoot(profiles, quoted, log);
  } catch (e) {
    return fail(e, e instanceof BootRefusal ? pcrDiff(profiles, quoted, e) : undefined);
  }
  observed.profile = match.profile;
  return {
    ...observed,
    ok: true,
    facts: {
      firmware_profile: match.profile,
      ...(match.matched.eventLog?.secureBoot ? { secure_boot: match.matched.eventLog.secureBoot } : {}),
      pcrs: pcrFacts(quoted),
      tpm_clock_ms: clockMs,
      tpm_clock_safe: q.clockInfo.safe,
      tpm_reset_count: q.clockInfo.resetCount,
      tpm_restart_count: q.clockInfo.restartCount,
    },
  };
}

/**
 * No reboot, no log: the event-log rules were judged on this boot's log when it was last
 * accepted. That verdict holds while the profile it matched is still one of the rule's and every
 * PCR of the selection still has the value it had then (PCRs only grow by extension, so an equal
 * value is the same measurement history). The pinned PCRs are judged afresh.
 */
function carriedOver(
  profiles: readonly FirmwareProfile[],
  quoted: QuotedPcrs,
  facts: Record<string, unknown>,
  ruleName: string,
): ProfileMatch {
  const last = profiles.find((p) => p.name === facts.firmware_profile);
  if (!last)
    throw new SigilError(
      'eventlog_required',
      `the profile this boot matched (${String(facts.firmware_profile)}) is no longer one of join_rule ${ruleName}'s: the event log must be sent to judge the boot again`,
    );
  // The pinned PCRs against the profile as it is now, first: a changed pinned PCR is a
  // pcr_mismatch with its diff, not a request for the log.
  const match = judgeBoot([{ ...last, eventLog: undefined }], quoted, undefined);
  const before = (facts.pcrs ?? {}) as Record<string, Record<string, string>>;
  const changed: string[] = [];
  for (const [bank, values] of quoted)
    for (const [pcr, v] of values)
      if (!(bank === last.pcrBank && last.pcrs.has(pcr)) && before[bank]?.[String(pcr)] !== v.toString('hex'))
        changed.push(`${bank}:${pcr}`);
  if (changed.length > 0)
    throw new SigilError(
      'eventlog_required',
      `PCR ${changed.join(', ')} changed since the last accepted attestation without a reboot: the event log must be sent to judge it`,
    );
  return match;
}

/** Every pinned PCR of the refused profile that is missing or not an accepted value (the refusal's diff). */
export function pcrDiff(profiles: readonly FirmwareProfile[], quoted: QuotedPcrs, e: BootRefusal): PcrDiffEntry[] {
  const p = profiles.find((x) => x.name === e.refusal.profile);
  const out: PcrDiffEntry[] = [];
  if (p) {
    const values = quoted.get(p.pcrBank);
    for (const [pcr, accepted] of [...p.pcrs].sort(([a], [b]) => a - b)) {
      const got = values?.get(pcr)?.toString('hex') ?? '';
      if (!accepted.includes(got)) out.push({ bank: p.pcrBank, pcr, expected: accepted, got });
    }
  }
  // An event-log refusal names the PCR it read; it is part of the diff too.
  const r = e.refusal;
  if (out.length === 0 && r.pcr !== undefined && p)
    out.push({ bank: p.pcrBank, pcr: r.pcr, expected: r.expected ?? [], got: r.got ?? '' });
  return out;
}
