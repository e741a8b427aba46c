/**
 * When the agent attests on its interval (`attest_every`, issue #16; docs/attest-interval.md),
 * and what it remembers of the last attempt for `sigil agent status`.
 *
 *   - Every `attest_every`, ±10% jitter, counted from the last attempt, so a fleet started at
 *     the same moment does not attest in lockstep; the first one within the first tenth of the
 *     interval after start (or one interval after the attempt remembered from before a restart).
 *   - A refusal (the boot state does not match: `pcr_mismatch`, …) waits for the next interval:
 *     asking again at once cannot change the PCRs, and with `refuse` the machine is re-admitted
 *     by the first attestation after the boot state matches again.
 *   - A carrier failure (issuer unreachable: retryable) retries with the renewal's capped
 *     backoff, never later than the next regular interval.
 *
 * The last outcome is kept in the agent state (setting LAST_ATTEST_SETTING), so status shows it
 * while the daemon runs, and a restart keeps the schedule.
 */
import type { Logger } from '../util/log.js';
import type { AttestOutcome } from './attest-client.js';
import { backoffDelay } from './schedule.js';
import type { AgentState } from './state/index.js';
import { isoTime } from '../util/iso-time.js';

export const LAST_ATTEST_SETTING = 'attest.last';

/** What is stored: the outcome and the consecutive carrier failures (for the backoff). */
export interface LastAttest {
  outcome: AttestOutcome;
  failures: number;
  next_at: number;
}

/** `from` + the interval, ±10% jitter (as renewals: ./schedule.ts renewAt). */
export function nextAttestAt(from: number, everyMs: number, rand: () => number = Math.random): number {
  return from + Math.round(everyMs * (0.9 + 0.2 * rand()));
}

/** The last attempt as stored, or undefined (none yet, or an unreadable value: treated as none). */
export function readLastAttest(state: Pick<AgentState, 'getSetting'>): LastAttest | undefined {
  const raw = state.getSetting(LAST_ATTEST_SETTING);
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as LastAttest;
    return v && typeof v === 'object' && v.outcome && typeof v.next_at === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface AttestScheduleDeps {
  everyMs: number;
  now: () => number;
  rand?: () => number;
  state: Pick<AgentState, 'getSetting' | 'setSetting'>;
  log: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** One attestation (./attest-client.ts attestOnce with the agent's link and method). */
  attempt: () => Promise<AttestOutcome>;
}

export class AttestSchedule {
  readonly #d: AttestScheduleDeps;
  readonly #rand: () => number;
  #next: number;
  #failures: number;
  /** Said once per run: the method has no evidence for this instance. */
  #toldNoEvidence = false;

  constructor(deps: AttestScheduleDeps) {
    this.#d = deps;
    this.#rand = deps.rand ?? Math.random;
    const last = readLastAttest(deps.state);
    const now = deps.now();
    this.#failures = last?.failures ?? 0;
    this.#next = last ? Math.min(last.next_at, nextAttestAt(now, deps.everyMs, this.#rand)) : this.#firstAt(now);
  }

  /** When the next attestation is due (unix ms). */
  nextAt(): number {
    return this.#next;
  }

  /** Attest if due; the outcome, or undefined when nothing was due. Never throws. */
  async runIfDue(): Promise<AttestOutcome | undefined> {
    if (this.#d.now() < this.#next) return undefined;
    return this.runNow();
  }

  /** Attest now, whatever the schedule (and reschedule from now). Never throws. */
  async runNow(): Promise<AttestOutcome> {
    let outcome: AttestOutcome;
    try {
      outcome = await this.#d.attempt();
    } catch (e) {
      // attestOnce never throws; a broken port must not stop the agent's loop either.
      const msg = e instanceof Error ? e.message : String(e);
      outcome = { kind: 'failed', at: this.#d.now(), code: 'internal', message: msg, retryable: true, transport: null };
    }
    this.#record(outcome);
    return outcome;
  }

  #firstAt(now: number): number {
    return now + Math.round(this.#d.everyMs * 0.1 * this.#rand());
  }

  #record(o: AttestOutcome): void {
    const now = this.#d.now();
    const regular = nextAttestAt(now, this.#d.everyMs, this.#rand);
    const { log } = this.#d;
    if (o.kind === 'failed') {
      this.#failures++;
      this.#next = Math.min(regular, now + backoffDelay(this.#failures - 1, this.#rand));
      log.warn(
        { op: 'attest', code: o.code, failures: this.#failures, retry_in_ms: this.#next - now, transport: o.transport },
        `attestation could not be sent: ${o.message}`,
      );
    } else {
      this.#failures = 0;
      this.#next = regular;
      if (o.kind === 'ok')
        log.info({ op: 'attest', profile: o.profile, transport: o.transport, rebooted: o.rebooted }, 'attested');
      else if (o.kind === 'refused')
        // The code is the failed check (pcr_mismatch, eventlog_replay_mismatch, …): say it first.
        log.warn(
          { op: 'attest', check: o.code, transport: o.transport, next_at: isoTime(this.#next) },
          `attestation refused (${o.code}): ${o.message}`,
        );
      else if (o.kind === 'skipped') {
        if (o.reason === 'no_evidence' && !this.#toldNoEvidence) {
          this.#toldNoEvidence = true;
          log.info(
            { op: 'attest' },
            'attest_every is set, but the join method has no boot-state evidence for this instance; not attesting',
          );
        } else log.debug({ op: 'attest', reason: o.reason }, 'attestation skipped');
      }
    }
    // A skip (not joined yet, no evidence) keeps the last attestation that was sent on show.
    const shown = o.kind === 'skipped' ? (readLastAttest(this.#d.state)?.outcome ?? o) : o;
    const last: LastAttest = { outcome: shown, failures: this.#failures, next_at: this.#next };
    this.#d.state.setSetting(LAST_ATTEST_SETTING, JSON.stringify(last));
  }
}
