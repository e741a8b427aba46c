/**
 * The TPM clock of a renewal's or interval attestation's quote against the instance's last
 * accepted one (attest/clock.ts checkClockSinceAccepted, called by join/tpm/reattest.ts), with
 * constructed TPMS_CLOCK_INFO values: swtpm cannot be made to report a chosen clock as safe after
 * a power cycle (it calls its clock unsafe until the next NV save), so the reboot tolerance is
 * exercised here with quotes signed by a software key posing as the AK — the issuer's checks of
 * the quote (signature, binding, selection, PCR digest) all pass, and only the clock is judged.
 * test/unit/tpm/continuous-attestation.test.ts covers the same-boot case with a real swtpm.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLOCK_NV_UPDATE_SLACK_MS, checkClockSinceAccepted } from '../../../src/attest/clock.js';
import { FirmwareProfiles } from '../../../src/attest/firmware/index.js';
import { akTemplate } from '../../../src/join/tpm/agent.js';
import { tpmAttestationPolicy, tpmReattest } from '../../../src/join/tpm/reattest.js';
import type { ReattestVerdict } from '../../../src/join/types.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from '../../../src/tpm/constants.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal } from '../../../src/tpm/structures/codec.js';
import { pcrSelection } from '../../../src/tpm/structures/pcr.js';
import { tpm2bPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';
import { LAB_ATTESTED_23_PROFILE } from '../../helpers/firmware-boot.js';

const ZERO = Buffer.alloc(32);
const LAST_CLOCK = 50_000_000_000; // ms: the clock of the instance's last accepted quote
const RESET = 7;
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** A software P-256 key with an AK's public area: the issuer's AK checks pass, and it signs whatever the test builds. */
function softwareAk(): { key: KeyObject; akPublic: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const t = akTemplate();
  const pub = { ...t, unique: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') } };
  return { key: privateKey, akPublic: b64(marshal(tpm2bPublic, { value: pub })) };
}

/** A quote over sha256:23 (all zeros) bound to `binding`, with the given clock. */
function quote(
  ak: KeyObject,
  binding: Buffer,
  clock: { clock: number; resetCount: number; safe: boolean },
): Record<string, unknown> {
  const attest: TpmsAttest = {
    magic: TPM_GENERATED_VALUE,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: new Uint8Array(0),
    extraData: binding,
    clockInfo: { clock: BigInt(clock.clock), resetCount: clock.resetCount, restartCount: 0, safe: clock.safe },
    firmwareVersion: 0n,
    attested: {
      pcrSelect: pcrSelection({ hash: TPM_ALG.SHA256, pcrs: [23] }),
      pcrDigest: createHash('sha256').update(ZERO).digest(),
    },
  };
  const bytes = marshal(tpmsAttest, attest);
  const rs = sign('sha256', bytes, { key: ak, dsaEncoding: 'ieee-p1363' });
  const signature = { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, r: rs.subarray(0, 32), s: rs.subarray(32) };
  return {
    quote: { attest: b64(bytes), signature: b64(marshal(tpmtSignature, signature as never)) },
    pcr_values: [{ bank: 'sha256', pcr: 23, digest: ZERO.toString('hex') }],
  };
}

describe('the TPM clock against the last accepted quote, after a reboot (2^22 ms tolerance)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-profiles-'));
  writeFileSync(join(dir, 'lab-attested-23.yaml'), LAB_ATTESTED_23_PROFILE);
  const firmware = new FirmwareProfiles(dir);
  const ak = softwareAk();
  const port = {
    now: Date.now(),
    rules: async <T>() =>
      [
        {
          name: 'racks',
          bot: 'gw',
          config: { ek_ca_files: ['/etc/ek-ca.pem'], firmware_profiles: ['lab-attested-23'] } as T,
        },
      ] as never,
  };
  const facts = {
    tpm_rule: 'racks',
    ak_public: ak.akPublic,
    firmware_profile: 'lab-attested-23',
    tpm_clock_ms: LAST_CLOCK,
    tpm_clock_safe: true,
    tpm_reset_count: RESET,
    tpm_restart_count: 0,
    attestation: { at: 1, ok: true, via: 'join', profile: 'lab-attested-23' },
  };

  /** The issuer's verdict on a quote with this clock (`reboot`: another resetCount than the last accepted). */
  async function judge(clockMs: number, o: { reboot: boolean; safe?: boolean }): Promise<ReattestVerdict> {
    const binding = createHash('sha256').update(`renewal ${clockMs}`).digest();
    const evidence = quote(ak.key, binding, {
      clock: clockMs,
      resetCount: o.reboot ? RESET + 1 : RESET,
      safe: o.safe ?? true,
    });
    return tpmReattest({ evidence, instanceFacts: facts, binding, now: Date.now() }, port, firmware);
  }
  const failedCheck = (v: ReattestVerdict): string | undefined => (v.ok ? undefined : v.error.code);

  it('within one boot a safe clock may not go back at all', async () => {
    expect(failedCheck(await judge(LAST_CLOCK + 1000, { reboot: false }))).toBeUndefined();
    expect(failedCheck(await judge(LAST_CLOCK - 1, { reboot: false }))).toBe('clock_invalid');
  });

  it('after a reboot a safe clock may trail by up to 2^22 ms (the NV update interval), not more', async () => {
    expect(CLOCK_NV_UPDATE_SLACK_MS).toBe(4_194_304);
    const within = await judge(LAST_CLOCK - CLOCK_NV_UPDATE_SLACK_MS, { reboot: true });
    expect(failedCheck(within)).toBeUndefined();
    expect(within).toMatchObject({ ok: true, rebooted: true });
    const beyond = await judge(LAST_CLOCK - CLOCK_NV_UPDATE_SLACK_MS - 1, { reboot: true });
    expect(failedCheck(beyond)).toBe('clock_invalid');
    expect(beyond.ok ? '' : beyond.error.message).toContain('by more than a reboot explains (4194304 ms)');
    // A day back is a restored copy of the TPM state, not a power loss.
    expect(failedCheck(await judge(LAST_CLOCK - 86_400_000, { reboot: true }))).toBe('clock_invalid');
  });

  it('a clock the TPM reports unsafe is not compared (it may legitimately be behind until the next NV save)', async () => {
    expect(failedCheck(await judge(LAST_CLOCK - 86_400_000, { reboot: true, safe: false }))).toBeUndefined();
  });

  it('checkClockSinceAccepted: the bounds exactly, and no recorded clock is nothing to compare', () => {
    const at = (ms: number, safe = true) => ({ clock: BigInt(ms), resetCount: 1, restartCount: 0, safe });
    expect(() => checkClockSinceAccepted(at(LAST_CLOCK), LAST_CLOCK, false)).not.toThrow();
    expect(() => checkClockSinceAccepted(at(LAST_CLOCK - 1), LAST_CLOCK, false)).toThrow(/within one boot/);
    expect(() => checkClockSinceAccepted(at(LAST_CLOCK - 2 ** 22), LAST_CLOCK, true)).not.toThrow();
    expect(() => checkClockSinceAccepted(at(LAST_CLOCK - 2 ** 22 - 1), LAST_CLOCK, true)).toThrow(
      /clock_invalid|reboot/,
    );
    expect(() => checkClockSinceAccepted(at(0), undefined, false)).not.toThrow();
  });

  it("the judgement takes the rule from the same request's policy, and reads the rules itself without one", async () => {
    let reads = 0;
    const counting = { now: port.now, rules: async <T>() => (reads++, port.rules<T>()) };
    const policy = await tpmAttestationPolicy(facts, counting);
    expect(policy).toMatchObject({ rule: 'racks', onFailure: 'refuse' });
    expect(reads).toBe(1);
    const binding = createHash('sha256').update('one request').digest();
    const evidence = quote(ak.key, binding, { clock: LAST_CLOCK + 1, resetCount: RESET, safe: true });
    const input = { evidence, instanceFacts: facts, binding, now: Date.now() };
    expect(await tpmReattest({ ...input, policy }, counting, firmware)).toMatchObject({ ok: true });
    expect(reads).toBe(1);
    expect(await tpmReattest(input, counting, firmware)).toMatchObject({ ok: true });
    expect(reads).toBe(2);
  });
});
