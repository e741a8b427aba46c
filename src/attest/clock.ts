/**
 * Clock sanity (`clock_invalid`). Every TPMS_ATTEST carries the TPM's TPMS_CLOCK_INFO
 * (Part 2 §10.11.1): `clock`, milliseconds the TPM has been powered since its last
 * TPM2_Clear; `resetCount` / `restartCount`; and `safe`, YES when `clock` has never been
 * reported larger before — after an unorderly power loss the TPM resumes from the last value
 * it saved to NV (every ~4 s) and says `safe = NO` until it passes that point again.
 *
 * resetCount, restartCount and firmwareVersion are obfuscated for keys outside the endorsement
 * and platform hierarchies (Part 1 §36.7) with a value derived from the signing key, so they
 * can be compared between attestations of one AK but not across joins (each join uses a fresh
 * AK). What is checked:
 *
 *  1. within one join, the quote and the certification come from the same boot of the same TPM:
 *     equal resetCount, restartCount and firmwareVersion (same AK, same obfuscation), and their
 *     clocks at most the challenge lifetime (+ 5 s) apart;
 *  2. for a machine seen before (same EK): when the TPM says `safe`, its clock is not behind the
 *     clock of the machine's last accepted attestation (instance fact `tpm_clock_ms`). A clock
 *     behind a safe reading means the TPM state was rolled back or cloned from an older copy —
 *     or the TPM was cleared (TPM2_Clear resets Clock). A deliberately cleared TPM is accepted
 *     under its old instance after `sigil ctl instances tpm-clock-reset <id>` (admin/ops.ts).
 *
 *  3. at a renewal or interval attestation ({@link checkClockSinceAccepted}): the same as 2
 *     against the instance's last accepted quote, except that after a reboot a safe clock may
 *     trail it by up to {@link CLOCK_NV_UPDATE_SLACK_MS}: after a power loss a TPM resumes from
 *     the Clock it last saved to NV and calls it safe again once it saves the next one
 *     (reference code TimeClockUpdate, NV_CLOCK_UPDATE_INTERVAL; swtpm does exactly this).
 *
 * Clock running faster than wall time is not refused: TPM2_ClockSet lets the owner advance it.
 */
import { SigilError } from '../errors.js';
import type { TpmsAttest } from '../tpm/structures/attest.js';
import type { TpmsClockInfo } from '../tpm/structures/basic.js';

/** Slack on top of the challenge lifetime between the quote and the certification. */
const SKEW_SLACK_MS = 5_000;

export interface ClockFacts {
  tpm_clock_ms: number;
  tpm_clock_safe: boolean;
}

export function checkClock(
  quote: TpmsAttest,
  certify: TpmsAttest,
  challengeTtlMs: number,
  previous: { clockMs: number; instanceId: string } | undefined,
): ClockFacts {
  const q = quote.clockInfo;
  const c = certify.clockInfo;
  if (
    q.resetCount !== c.resetCount ||
    q.restartCount !== c.restartCount ||
    quote.firmwareVersion !== certify.firmwareVersion
  ) {
    throw new SigilError(
      'clock_invalid',
      'the quote and the certification come from different boots of the TPM (their reset/restart counters or firmware versions differ)',
    );
  }
  const apart = Number(c.clock > q.clock ? c.clock - q.clock : q.clock - c.clock);
  if (apart > challengeTtlMs + SKEW_SLACK_MS) {
    throw new SigilError(
      'clock_invalid',
      `the quote and the certification were made ${apart} ms of TPM time apart; an answer to one challenge takes at most ${challengeTtlMs} ms`,
    );
  }
  const clockMs = Number(q.clock);
  if (previous !== undefined && q.safe && clockMs < previous.clockMs) {
    throw new SigilError(
      'clock_invalid',
      `the TPM clock (${clockMs} ms, reported safe) is behind the ${previous.clockMs} ms this machine's TPM reported at its last join: its state was rolled back or cloned, or the TPM was cleared; if it was cleared on purpose: sigil ctl --data-dir <issuer-data-dir> instances tpm-clock-reset ${previous.instanceId}`,
    );
  }
  return { tpm_clock_ms: clockMs, tpm_clock_safe: q.safe };
}

/** How far a TPM's Clock may trail after a power loss: the reference code's NV_CLOCK_UPDATE_INTERVAL, 2^22 ms (~70 min). */
export const CLOCK_NV_UPDATE_SLACK_MS = 2 ** 22;

/**
 * A fresh quote's clock against the instance's last accepted one (`lastClockMs`, fact
 * `tpm_clock_ms`; undefined: none recorded). `rebooted`: its resetCount/restartCount differ from
 * the last accepted quote's. Throws `clock_invalid` when a clock reported safe is behind it —
 * within one boot at all, after a reboot by more than {@link CLOCK_NV_UPDATE_SLACK_MS}: an
 * older copy of the TPM state (rollback, clone) or a cleared TPM.
 */
export function checkClockSinceAccepted(
  clock: TpmsClockInfo,
  lastClockMs: number | undefined,
  rebooted: boolean,
): void {
  const clockMs = Number(clock.clock);
  const slack = rebooted ? CLOCK_NV_UPDATE_SLACK_MS : 0;
  if (clock.safe && lastClockMs !== undefined && clockMs + slack < lastClockMs)
    throw new SigilError(
      'clock_invalid',
      `the TPM clock (${clockMs} ms, reported safe) is behind the ${lastClockMs} ms of this instance's last accepted attestation${rebooted ? ` by more than a reboot explains (${slack} ms)` : ' within one boot'}: its state was rolled back or cloned, or the TPM was cleared`,
    );
}
