/**
 * Compiled (never run) by test/unit/attest/verified-eventlog-types.test.ts: each
 * `@ts-expect-error` below must be an error, so an unverified event log cannot be handed to
 * firmware-profile evaluation — if one of these lines starts compiling, that test fails.
 */
import { VerifiedEventLog, verifyEventLog } from '../../src/attest/eventlog.js';
import { evaluateProfile, judgeBoot, type FirmwareProfile } from '../../src/attest/firmware/index.js';
import type { QuotedPcrs } from '../../src/attest/quote.js';
import type { ParsedLog } from '../../src/tpm/eventlog/index.js';

export function unverified(
  profile: FirmwareProfile,
  pcrs: Map<number, Buffer>,
  log: ParsedLog,
  quoted: QuotedPcrs,
): void {
  // @ts-expect-error a parsed (unverified) log is not a VerifiedEventLog
  evaluateProfile(profile, { pcrs, eventLog: log });
  // @ts-expect-error judgeBoot too takes only a verified log
  judgeBoot([profile], quoted, log);
  // @ts-expect-error the constructor is private: only VerifiedEventLog.replay makes one
  new VerifiedEventLog(Symbol('x'), log, quoted, new Map());
  // @ts-expect-error a structural look-alike is not one (private fields)
  const lookAlike: VerifiedEventLog = {
    log,
    covers: () => true,
    replayedPcrs: () => [],
    hasBank: () => true,
    verifiedEvents: function* () {},
  };
  void lookAlike;
  // The one way in: replay against the quote.
  evaluateProfile(profile, { pcrs, eventLog: verifyEventLog(log, quoted) });
}
