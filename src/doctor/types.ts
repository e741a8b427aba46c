/**
 * `sigil doctor`: a list of independent checks, each answering one question an operator asks
 * when something does not work ("does my config parse?", "is the pin right?", "can the broker
 * ACL see my answers?") with a status, what was found, and — when it is not ok — the command or
 * config key that fixes it. SPIRE's `healthcheck`, tbot's `--debug` checks and step-ca's
 * `step certificate inspect` answer such questions one by one; doctor asks them all at once.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** What a check found. `fix` is a command to run or a config key to set; given for warn and fail. */
export interface CheckOutcome {
  status: CheckStatus;
  detail: string;
  fix?: string;
}

/** One reported line (the JSON form is exactly this, `fix` null when there is none). */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix: string | null;
}

export interface DoctorReport {
  checks: CheckResult[];
  /** No check failed (warnings do not make a report fail). */
  ok: boolean;
}

/**
 * One check. `run` may throw: the runner reports a crash as `fail … internal: message`, and a
 * check that outlives `timeoutMs` as a failure too, aborting `signal` so it can let go of
 * sockets and TPM connections.
 */
export interface Check<Ctx> {
  name: string;
  /** Default {@link DEFAULT_CHECK_TIMEOUT_MS}; network checks must stay ≤ 5 s. */
  timeoutMs?: number;
  run(ctx: Ctx, signal: AbortSignal): Promise<CheckOutcome> | CheckOutcome;
}

/** Network checks: a doctor that hangs on a dead issuer is no doctor. */
export const NETWORK_TIMEOUT_MS = 5_000;
/** Local checks: file modes and SQLite reads take milliseconds; a stuck NFS mount does not. */
export const DEFAULT_CHECK_TIMEOUT_MS = 10_000;

export const ok = (detail: string): CheckOutcome => ({ status: 'ok', detail });
export const warn = (detail: string, fix: string): CheckOutcome => ({ status: 'warn', detail, fix });
export const fail = (detail: string, fix: string): CheckOutcome => ({ status: 'fail', detail, fix });
