/**
 * The daemon's check of the issuer's trust sequence between renewals (`trust_check_every`,
 * docs/credentials.md "Trust files follow a key rotation"). The same signed bundle answer brings
 * the root CRL every agent keeps (./root-crl-state.ts; agent.ts hands it over).
 *
 * The SSH outputs' trust files list the issuer's SSH CAs, and a JWT output's token names the
 * key that signed it. After `sigil server rotate-key --overlap 0` (a stolen CA key) those must
 * change at once: an sshd trusting the stolen user CA lets its thief in with any principal. The
 * identity answer carries `trust_sequence` (protocol/messages.ts), but renewals come at about
 * half an identity's lifetime — hours. So every `trust_check_every` (default 5 minutes, ±10%
 * jitter) the daemon asks for the issuer's signed `bundle` answer, which carries the same
 * sequence, and when it has risen the outputs in TRUST_FILE_OUTPUTS are due at once.
 *
 * Only a RISE counts here. Behind a load balancer a peer issuer that has not yet read a step
 * answers the older sequence for a few seconds; taking any change would re-issue twice, and a
 * peer whose rotation list lags for good would re-issue every interval. A sequence that went
 * back (ca/ restored from a backup) is still taken by the next identity answer (agent.ts).
 *
 * Who could attack it: the answer is verified against the pinned root like every answer (a
 * forged or altered sequence fails the signature); over MQTT the broker cannot replay an older
 * answer, the request's nonce is echoed in the signed payload (server/ops/bundle.ts). What a
 * broker or the network can do is drop the answers: the outputs then keep their trust until
 * the next renewal, as before, and `sigil agent status` shows the failing check.
 */
import type { Logger } from '../util/log.js';
import type { AgentState } from './state/index.js';
import { TRUST_SEQUENCE_SETTING } from './credential-status.js';
import { toSigilError } from '../errors.js';

/** `trust_check_every` when the config leaves it out (bounds: config.ts). */
export const TRUST_CHECK_DEFAULT_S = 300;

/** The first retry after a failed check (then doubled, up to the interval). */
export const FIRST_RETRY_MS = 30_000;

/** Settings key of the last check (for `sigil agent status`). */
export const LAST_TRUST_CHECK_SETTING = 'trust.last_check';

/** What is stored of the last check. */
export interface LastTrustCheck {
  at: number;
  /** The sequence the issuer answered (0: it never rotated a key), or null when the check failed. */
  sequence: number | null;
  /** `code: message` of a failed check, else null. */
  error: string | null;
  failures: number;
  next_at: number;
}

export function readLastTrustCheck(state: Pick<AgentState, 'getSetting'>): LastTrustCheck | undefined {
  const raw = state.getSetting(LAST_TRUST_CHECK_SETTING);
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as LastTrustCheck;
    return v && typeof v === 'object' && typeof v.at === 'number' && typeof v.next_at === 'number' ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface TrustCheckDeps {
  everyMs: number;
  now: () => number;
  rand?: () => number;
  state: Pick<AgentState, 'getSetting' | 'setSetting' | 'getIdentity'>;
  log: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** The issuer's verified `bundle` answer (agent/transports.ts IssuerLink.bundle). */
  fetchSequence: () => Promise<number | undefined>;
}

export class TrustCheck {
  readonly #d: TrustCheckDeps;
  readonly #rand: () => number;
  #next: number;
  #failures: number;

  constructor(deps: TrustCheckDeps) {
    this.#d = deps;
    this.#rand = deps.rand ?? Math.random;
    const last = readLastTrustCheck(deps.state);
    const now = deps.now();
    this.#failures = last?.failures ?? 0;
    // After a restart, not later than one interval from now (a stored time may be far off if the
    // interval was shortened since); a first start checks within the first tenth of an interval.
    this.#next = last ? Math.min(last.next_at, this.#after(now)) : now + Math.round(deps.everyMs * 0.1 * this.#rand());
  }

  nextAt(): number {
    return this.#next;
  }

  /**
   * Check if due. True when the issuer's sequence rose above the one the agent keeps (now
   * stored): the caller refreshes its credential outputs. Never throws.
   */
  async runIfDue(): Promise<boolean> {
    if (this.#d.now() < this.#next) return false;
    return this.runNow();
  }

  /**
   * A one-shot process (`agent run --once`): check if due, or if no check was ever stored — the
   * daemon's first check waits up to a tenth of the interval, which a cron'd process would wait
   * again in every run and never reach. A failure is logged at debug (the pass's own result is
   * its one line; `agent status` shows the check's error) and is tried again after the whole
   * interval, not after 30 s: with the issuer away, each pass would wait out a timeout for it.
   * Never throws.
   */
  async runOnePass(): Promise<boolean> {
    if (readLastTrustCheck(this.#d.state) !== undefined && this.#d.now() < this.#next) return false;
    return this.runNow({ oneShot: true });
  }

  /** Check now, whatever the schedule. Never throws (the daemon's loop must go on). */
  async runNow(opts: { oneShot?: boolean } = {}): Promise<boolean> {
    try {
      return await this.#check(opts.oneShot === true);
    } catch (e) {
      // The state database itself failed (disk full, …): try again at the next interval.
      this.#next = this.#after(this.#d.now());
      this.#d.log.warn({ op: 'trust_check', err: (e as Error).message }, 'trust check failed');
      return false;
    }
  }

  async #check(oneShot: boolean): Promise<boolean> {
    const { state, log } = this.#d;
    // Nothing to follow before the join: the outputs wait for an identity anyway.
    if (!state.getIdentity()) {
      this.#next = this.#after(this.#d.now());
      return false;
    }
    let sequence: number;
    try {
      sequence = (await this.#d.fetchSequence()) ?? 0;
    } catch (e) {
      const err = toSigilError(e);
      this.#failures++;
      // Said once per streak: the renewal loop reports an unreachable issuer already.
      log[this.#failures === 1 && !oneShot ? 'warn' : 'debug'](
        { op: 'trust_check', code: err.code, failures: this.#failures },
        `could not check the issuer's trust sequence: ${err.message}`,
      );
      // Again sooner than the interval: one failure at the wrong moment must not double the time a
      // withdrawn CA stays trusted (30 s, 60 s, … up to the interval, ±10%).
      const retry = oneShot
        ? this.#d.everyMs
        : Math.min(this.#d.everyMs, FIRST_RETRY_MS * 2 ** Math.min(this.#failures - 1, 16));
      this.#record(null, `${err.code}: ${err.message.split('\n')[0]}`, retry);
      return false;
    }
    this.#failures = 0;
    const kept = Number(state.getSetting(TRUST_SEQUENCE_SETTING) ?? 0);
    const rose = sequence > kept;
    if (rose) {
      state.setSetting(TRUST_SEQUENCE_SETTING, String(sequence));
      log.info(
        { op: 'trust_check', trust_sequence: sequence, was: kept },
        'the issuer changed its signing keys: re-issuing the ssh and jwt outputs',
      );
    } else log.debug({ op: 'trust_check', trust_sequence: sequence }, 'trust sequence unchanged');
    this.#record(sequence, null);
    return rose;
  }

  #after(now: number, everyMs = this.#d.everyMs): number {
    return now + Math.round(everyMs * (0.9 + 0.2 * this.#rand()));
  }

  #record(sequence: number | null, error: string | null, inMs?: number): void {
    const now = this.#d.now();
    this.#next = this.#after(now, inMs);
    const last: LastTrustCheck = { at: now, sequence, error, failures: this.#failures, next_at: this.#next };
    this.#d.state.setSetting(LAST_TRUST_CHECK_SETTING, JSON.stringify(last));
  }
}
