/**
 * attest/clock.ts (TPMS_CLOCK_INFO, Part 2 §10.11.1) and attest/credential.ts (credential
 * activation, Part 1 §24), each check broken alone. The swtpm runs are in
 * test/integration/tpm-join.test.ts.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkClock } from '../../../src/attest/clock.js';
import { checkActivation, credentialChallenge } from '../../../src/attest/credential.js';
import { TPM_ST } from '../../../src/tpm/constants.js';
import type { TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { toSized } from '../../../src/tpm/structures/codec.js';
import { publicFromKeyObject } from '../../../src/tpm/structures/keys.js';
import { tpmtPublic, type TpmtPublic } from '../../../src/tpm/structures/public.js';
import { akTemplateEccP256, ekTemplateRsa2048 } from '../../../src/tpm/templates.js';

const at = (
  clock: bigint,
  o: { resetCount?: number; restartCount?: number; safe?: boolean; firmwareVersion?: bigint } = {},
): TpmsAttest =>
  ({
    magic: 0,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: Buffer.alloc(0),
    extraData: Buffer.alloc(0),
    clockInfo: { clock, resetCount: o.resetCount ?? 3, restartCount: o.restartCount ?? 0, safe: o.safe ?? true },
    firmwareVersion: o.firmwareVersion ?? 7n,
    attested: { pcrSelect: [], pcrDigest: Buffer.alloc(0) },
  }) as TpmsAttest;

const refused = (code: string, message?: RegExp) =>
  expect.objectContaining({ code, ...(message ? { message: expect.stringMatching(message) } : {}) });

describe('checkClock', () => {
  it('accepts one boot, close in time, not behind the last join; returns the facts', () => {
    expect(checkClock(at(10_000n), at(10_500n), 60_000, { clockMs: 9_000, instanceId: 'tpm-1' })).toEqual({
      tpm_clock_ms: 10_000,
      tpm_clock_safe: true,
    });
  });

  it('refuses a quote and a certification from different boots or firmware', () => {
    expect(() => checkClock(at(1n), at(2n, { resetCount: 4 }), 60_000, undefined)).toThrow(
      refused('clock_invalid', /different boots/),
    );
    expect(() => checkClock(at(1n), at(2n, { restartCount: 1 }), 60_000, undefined)).toThrow(
      refused('clock_invalid', /different boots/),
    );
    expect(() => checkClock(at(1n), at(2n, { firmwareVersion: 8n }), 60_000, undefined)).toThrow(
      refused('clock_invalid', /different boots/),
    );
  });

  it('refuses attestations further apart than one challenge allows', () => {
    expect(() => checkClock(at(0n), at(70_000n), 60_000, undefined)).toThrow(
      refused('clock_invalid', /70000 ms of TPM time apart/),
    );
  });

  it('refuses a safe clock behind the last join (rollback, clone, clear), but not an unsafe one', () => {
    expect(() => checkClock(at(5_000n), at(5_100n), 60_000, { clockMs: 9_000, instanceId: 'tpm-1' })).toThrow(
      refused('clock_invalid', /tpm-clock-reset tpm-1/),
    );
    expect(
      checkClock(at(5_000n, { safe: false }), at(5_100n, { safe: false }), 60_000, {
        clockMs: 9_000,
        instanceId: 'tpm-1',
      }).tpm_clock_safe,
    ).toBe(false);
  });
});

describe('credential activation (issuer half)', () => {
  const ek = toSized(tpmtPublic, {
    ...ekTemplateRsa2048(),
    unique: publicFromKeyObject(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey).unique,
  } as TpmtPublic);
  const ak = toSized(tpmtPublic, {
    ...akTemplateEccP256(),
    unique: publicFromKeyObject(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey).unique,
  } as TpmtPublic);

  it('accepts exactly the wrapped secret, refuses anything else: credential_mismatch', () => {
    const c = credentialChallenge(ek, ak);
    expect(c.credential.blob.length).toBeGreaterThan(0);
    expect(() => checkActivation(c.secret, c.secret)).not.toThrow();
    const flipped = Buffer.from(c.secret, 'base64');
    flipped[0]! ^= 1;
    expect(() => checkActivation(c.secret, flipped.toString('base64'))).toThrow(refused('credential_mismatch'));
    expect(() => checkActivation(c.secret, Buffer.from(c.secret, 'base64').subarray(0, 16).toString('base64'))).toThrow(
      refused('credential_mismatch'),
    );
    expect(credentialChallenge(ek, ak).secret).not.toBe(c.secret); // fresh each time
  });
});
