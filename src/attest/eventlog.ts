/**
 * The boot event log as evidence. A TCG PC Client event log (PFP §10) is whatever the machine
 * sends: its digests mean something only once replaying them (PCR := H(PCR || digest), TPM 2.0
 * Part 1 §17.2) yields the PCR values the TPM quoted, and then only for the PCRs the quote
 * covers. So the only way to a {@link VerifiedEventLog} — the one type firmware-profile
 * evaluation accepts — is {@link verifyEventLog}, which replays it against the quoted PCRs of
 * every quoted bank: an unverified log cannot reach a rule by construction (the class has a
 * private constructor and a runtime brand, so neither `new` nor a look-alike object passes).
 *
 *   eventlog_invalid          the log (gzip) does not decompress or parse
 *   eventlog_replay_mismatch  replayed per quoted bank, a PCR the log extends differs from the
 *                             quoted value, or the log has no digests for a quoted bank
 *
 * A verified log still holds every event (so a rule can say *which* event it cannot use and
 * why), but {@link VerifiedEventLog.verifiedEvents} yields only those in PCRs the quote covers:
 * events in other PCRs are vouched for by nothing.
 */
import { gunzipSync } from 'node:zlib';
import { SigilError } from '../errors.js';
import { parseEventLog, replayEventLog, type ParsedLog, type PcrBank, type TcgEvent } from '../tpm/eventlog/index.js';
import type { QuotedPcrs } from './quote.js';

/** Events a join's boot log may hold (parseEventLog's own limit, 100k, is for any log). */
export const MAX_JOIN_EVENTS = 10_000;

/** Gunzip (at most `maxBytes`) and parse the event log an agent sent (`eventlog_invalid`). */
export function readEventLog(gzB64: string, maxBytes: number): ParsedLog {
  let raw: Buffer;
  try {
    raw = gunzipSync(Buffer.from(gzB64, 'base64'), { maxOutputLength: maxBytes });
  } catch (e) {
    throw new SigilError(
      'eventlog_invalid',
      `the event log is not gzip data within ${maxBytes} bytes: ${(e as Error).message}`,
    );
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

/** Why a log does not replay to the quote: the bank, and the PCR with both values when one differs. */
export interface ReplayMismatch {
  bank: PcrBank;
  pcr?: number;
  expected?: string;
  got?: string;
  message: string;
}

/** Only {@link VerifiedEventLog.replay} holds this; the constructor checks it at run time too. */
const REPLAYED: unique symbol = Symbol('replayed against a quote');

export class VerifiedEventLog {
  readonly #log: ParsedLog;
  readonly #quoted: QuotedPcrs;
  readonly #replayed: ReadonlyMap<PcrBank, ReadonlyMap<number, Buffer>>;

  private constructor(
    token: typeof REPLAYED,
    log: ParsedLog,
    quoted: QuotedPcrs,
    replayed: ReadonlyMap<PcrBank, ReadonlyMap<number, Buffer>>,
  ) {
    if (token !== REPLAYED)
      throw new SigilError('internal', 'a VerifiedEventLog is made only by replaying a log against a quote');
    this.#log = log;
    this.#quoted = quoted;
    this.#replayed = replayed;
  }

  /**
   * Replay `log` in every bank of `quoted`: every quoted PCR the log extends must equal its
   * replayed value. The mismatch, or the verified log.
   */
  static replay(
    log: ParsedLog,
    quoted: QuotedPcrs,
  ): { ok: true; log: VerifiedEventLog } | { ok: false; mismatch: ReplayMismatch } {
    const replayedByBank = new Map<PcrBank, ReadonlyMap<number, Buffer>>();
    for (const [bank, values] of quoted) {
      let replayed: Map<number, Buffer>;
      try {
        replayed = replayEventLog(log, bank);
      } catch (e) {
        if (e instanceof SigilError)
          return {
            ok: false,
            mismatch: { bank, message: `the event log cannot be replayed in the quoted ${bank} bank: ${e.message}` },
          };
        throw e;
      }
      for (const [pcr, value] of [...values].sort(([a], [b]) => a - b)) {
        const r = replayed.get(pcr);
        if (r !== undefined && !r.equals(value)) {
          const got = r.toString('hex');
          const expected = value.toString('hex');
          return {
            ok: false,
            mismatch: {
              bank,
              pcr,
              expected,
              got,
              message: `the event log replays ${bank} PCR ${pcr} to ${got}, but the quote says ${expected}`,
            },
          };
        }
      }
      replayedByBank.set(bank, replayed);
    }
    return { ok: true, log: new VerifiedEventLog(REPLAYED, log, quoted, replayedByBank) };
  }

  /** True only for a log that went through {@link replay} (a structural look-alike is not one). */
  static is(x: unknown): x is VerifiedEventLog {
    return typeof x === 'object' && x !== null && #log in x;
  }

  /** Whether the quote covers `pcr` in `bank`, so the replay proved the digests of its events. */
  covers(bank: PcrBank, pcr: number): boolean {
    return this.#quoted.get(bank)?.has(pcr) ?? false;
  }

  /** The quoted PCRs of `bank` the log extends (all of them replayed to the quoted value). */
  replayedPcrs(bank: PcrBank): number[] {
    const replayed = this.#replayed.get(bank);
    return replayed === undefined ? [] : [...replayed.keys()].filter((p) => this.covers(bank, p)).sort((a, b) => a - b);
  }

  /** Whether the log was replayed in `bank` (a bank the quote covers). */
  hasBank(bank: PcrBank): boolean {
    return this.#replayed.has(bank);
  }

  /** The events whose digests the replay proved in `bank`: those in PCRs the quote covers. */
  *verifiedEvents(bank: PcrBank): Generator<TcgEvent> {
    for (const ev of this.#log.events) if (this.covers(bank, ev.pcr)) yield ev;
  }

  /**
   * The whole log, replay-verified in the quoted PCRs. For readers that must see every event to
   * say which one a rule cannot use (facts are taken only from events {@link covers} accepts).
   */
  get log(): ParsedLog {
    return this.#log;
  }
}

/** {@link VerifiedEventLog.replay}, throwing `eventlog_replay_mismatch`. */
export function verifyEventLog(log: ParsedLog, quoted: QuotedPcrs): VerifiedEventLog {
  const r = VerifiedEventLog.replay(log, quoted);
  if (!r.ok) throw new SigilError('eventlog_replay_mismatch', r.mismatch.message);
  return r.log;
}
