/**
 * attest/clock.ts at its exact boundaries (mutation testing, docs/testing.md area tpm-verify): the
 * quote and the certification may be at most one challenge lifetime + 5 s of TPM time apart, in
 * either order; a safe TPM clock equal to the one recorded at the last join is not a rollback,
 * one millisecond less is.
 */
import { describe, expect, it } from 'vitest';
import { checkClock } from '../../../src/attest/clock.js';
import { TPM_ST } from '../../../src/tpm/constants.js';
import type { TpmsAttest } from '../../../src/tpm/structures/attest.js';

const TTL = 60_000;
const LIMIT = TTL + 5_000;
const at = (clock: number): TpmsAttest =>
  ({
    magic: 0,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: Buffer.alloc(0),
    extraData: Buffer.alloc(0),
    clockInfo: { clock: BigInt(clock), resetCount: 3, restartCount: 0, safe: true },
    firmwareVersion: 7n,
    attested: { pcrSelect: [], pcrDigest: Buffer.alloc(0) },
  }) as TpmsAttest;
const apart = expect.objectContaining({
  code: 'clock_invalid',
  message: expect.stringMatching(/ms of TPM time apart/),
});
const behind = expect.objectContaining({ code: 'clock_invalid', message: expect.stringMatching(/is behind the/) });

describe('checkClock boundaries', () => {
  it('quote and certification exactly the limit apart pass; one millisecond more is clock_invalid, in either order', () => {
    const base = 1_000_000;
    expect(() => checkClock(at(base), at(base + LIMIT), TTL, undefined)).not.toThrow();
    expect(() => checkClock(at(base + LIMIT), at(base), TTL, undefined)).not.toThrow();
    expect(() => checkClock(at(base), at(base + LIMIT + 1), TTL, undefined)).toThrow(apart);
    expect(() => checkClock(at(base + LIMIT + 1), at(base), TTL, undefined)).toThrow(apart);
    expect(() => checkClock(at(base + LIMIT + 1), at(base), TTL, undefined)).toThrow(/made 65001 ms of TPM time apart/);
  });

  it('a safe clock equal to the last join passes; one millisecond behind is a rollback', () => {
    const prev = { clockMs: 500_000, instanceId: 'tpm-1' };
    expect(checkClock(at(500_000), at(500_010), TTL, prev)).toEqual({ tpm_clock_ms: 500_000, tpm_clock_safe: true });
    expect(() => checkClock(at(499_999), at(500_010), TTL, prev)).toThrow(behind);
  });
});
