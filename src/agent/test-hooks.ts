/**
 * TEST-ONLY hooks, read from the environment once at start. They exist so the end-to-end tests
 * can prove crash safety and clock-skew handling on a real process; nothing in production sets
 * them, and both are inert when unset.
 *
 *   SIGIL_TEST_CRASH_AT=<point>        SIGKILL this process at that point of a join/renewal:
 *     before_persist   the request is built, not yet in the outbox
 *     after_persist    in the outbox, not yet sent
 *     after_send       sent (HTTPS body flushed / MQTT publish acknowledged by the broker),
 *                      no answer yet
 *     after_response   the answer is verified, not yet stored
 *     during_output    the new identity is stored; killed inside the output write, right before
 *                      one of the renames of the file set (random: none, one or two of the three
 *                      files renamed — the worst case is a new key next to the old certificate)
 *   SIGIL_TEST_CRASH_RENAME=<k>        with during_output: kill before rename k (0, 1 or 2) instead
 *                                      of a random one
 *   SIGIL_TEST_CLOCK_OFFSET_MS=<ms>    the agent's clock runs this far from the system clock
 *                                      (request timestamps, expiry decisions, verification time)
 *   SIGIL_TEST_ATTEST_EVERY_MS=<ms>, SIGIL_TEST_TRUST_CHECK_EVERY_MS=<ms>  the interval
 *                                      attestation's and the trust check's intervals, below their
 *                                      config floors
 *
 * SIGKILL (not an exception) is the point: no finally blocks, no flushing, exactly what a power
 * cut or the OOM killer does to the agent.
 */
import fs from 'node:fs';

export type CrashPoint = 'before_persist' | 'after_persist' | 'after_send' | 'after_response' | 'during_output';

const CRASH_POINTS: readonly CrashPoint[] = [
  'before_persist',
  'after_persist',
  'after_send',
  'after_response',
  'during_output',
];

const crashAt = ((): CrashPoint | undefined => {
  const v = process.env.SIGIL_TEST_CRASH_AT;
  return v && (CRASH_POINTS as readonly string[]).includes(v) ? (v as CrashPoint) : undefined;
})();

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is delivered before kill(2) returns to a process signalling itself; never reached.
  throw new Error('unreachable');
}

/** Kill the process here if the test asked for this point. */
export function crashPoint(point: Exclude<CrashPoint, 'during_output'>): void {
  if (crashAt === point) die();
}

/**
 * Run `write` (the output write of a new identity); with `during_output` set, the process is
 * killed inside it, right before the k-th rename(2) of the file set (k uniform in 0..2).
 * The real write code runs unchanged: only fs.renameSync is intercepted, and only here.
 */
export function duringOutput<T>(write: () => T): T {
  if (crashAt !== 'during_output') return write();
  const files = 3;
  const chosen = Number(process.env.SIGIL_TEST_CRASH_RENAME);
  const killBefore =
    Number.isInteger(chosen) && chosen >= 0 && chosen < files ? chosen : Math.floor(Math.random() * files);
  const rename = fs.renameSync;
  let n = 0;
  fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    if (n++ === killBefore) die();
    rename(from, to);
  }) as typeof fs.renameSync;
  try {
    return write();
  } finally {
    fs.renameSync = rename;
  }
}

/** The agent's clock: the system clock, shifted by SIGIL_TEST_CLOCK_OFFSET_MS in tests. */
export function agentClock(): () => number {
  const offset = Number(process.env.SIGIL_TEST_CLOCK_OFFSET_MS ?? 0);
  if (!Number.isFinite(offset) || offset === 0) return Date.now;
  return () => Date.now() + offset;
}

/**
 * SIGIL_TEST_ATTEST_EVERY_MS=<ms>: the interval of `attest_every` (when the config sets it) in
 * milliseconds, below its one-minute floor, so an end-to-end test sees several interval
 * attestations (test/e2e/tpm-interval-attest.test.ts). Undefined when unset.
 */
export function attestEveryOverrideMs(): number | undefined {
  const v = Number(process.env.SIGIL_TEST_ATTEST_EVERY_MS);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}

/** SIGIL_TEST_TRUST_CHECK_EVERY_MS: the trust check's interval in ms (below trust_check_every's 30 s floor; tests). */
export function trustCheckEveryOverrideMs(): number | undefined {
  const v = Number(process.env.SIGIL_TEST_TRUST_CHECK_EVERY_MS);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}
