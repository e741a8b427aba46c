/**
 * What the issuer keeps between attestations (issue #16's CPU work) never changes a verdict:
 * join/tpm/reattest.ts judges with FirmwareProfiles.resolved (the rule's profiles and their PCR
 * selection, kept per loaded profile directory) and AkKeys (the instance AK parsed, checked and
 * imported once per exact text). With both warm, a profile edited on disk, a profile removed, a
 * changed PCR value, a re-joined machine's new AK and a replayed quote are each judged as they
 * would be cold. Quotes are signed by a software key posing as the AK (as in reattest-clock.test.ts).
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AkKeys } from '../../../src/attest/ak.js';
import { FirmwareProfiles } from '../../../src/attest/firmware/index.js';
import { akTemplate } from '../../../src/join/tpm/agent.js';
import { tpmReattest } from '../../../src/join/tpm/reattest.js';
import type { ReattestVerdict } from '../../../src/join/types.js';
import { TPM_ALG, TPM_GENERATED_VALUE, TPM_ST, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { tpmsAttest, type TpmsAttest } from '../../../src/tpm/structures/attest.js';
import { marshal } from '../../../src/tpm/structures/codec.js';
import { pcrSelection } from '../../../src/tpm/structures/pcr.js';
import { tpm2bPublic } from '../../../src/tpm/structures/public.js';
import { tpmtSignature } from '../../../src/tpm/structures/signature.js';

const ZERO = '00'.repeat(32);
const ONES = '01'.repeat(32);
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const profile = (pins: Record<number, string>): string =>
  `name: lab-pinned\npcr_bank: sha256\npcrs:\n${Object.entries(pins)
    .map(([pcr, v]) => `  "${pcr}": ["${v}"]`)
    .join('\n')}\n`;

function softwareAk(attributes?: number): { key: KeyObject; akPublic: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const t = akTemplate();
  const pub = {
    ...t,
    objectAttributes: attributes ?? t.objectAttributes,
    unique: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') },
  };
  return { key: privateKey, akPublic: b64(marshal(tpm2bPublic, { value: pub })) };
}

let clock = 1_000_000;
/** A quote over sha256 PCRs `values` (pcr → hex), bound to `binding`, signed by `ak`. */
function quote(ak: KeyObject, binding: Buffer, values: Record<number, string>): Record<string, unknown> {
  const pcrs = Object.keys(values)
    .map(Number)
    .sort((a, b) => a - b);
  const digest = createHash('sha256');
  for (const p of pcrs) digest.update(Buffer.from(values[p]!, 'hex'));
  const attest: TpmsAttest = {
    magic: TPM_GENERATED_VALUE,
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: new Uint8Array(0),
    extraData: binding,
    clockInfo: { clock: BigInt((clock += 1000)), resetCount: 3, restartCount: 0, safe: true },
    firmwareVersion: 0n,
    attested: { pcrSelect: pcrSelection({ hash: TPM_ALG.SHA256, pcrs }), pcrDigest: digest.digest() },
  };
  const bytes = marshal(tpmsAttest, attest);
  const rs = sign('sha256', bytes, { key: ak, dsaEncoding: 'ieee-p1363' });
  const signature = { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256, r: rs.subarray(0, 32), s: rs.subarray(32) };
  return {
    quote: { attest: b64(bytes), signature: b64(marshal(tpmtSignature, signature as never)) },
    pcr_values: pcrs.map((pcr) => ({ bank: 'sha256', pcr, digest: values[pcr] })),
  };
}

/** One issuer's view: a profile directory it re-reads by its own clock, its AK memo, one instance. */
function issuer() {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-warm-'));
  writeFileSync(join(dir, 'lab-pinned.yaml'), profile({ 23: ZERO }));
  let now = 1_000_000;
  const firmware = new FirmwareProfiles(dir, { now: () => now });
  const aks = new AkKeys(8);
  const port = {
    now,
    rules: async <T>() =>
      [
        { name: 'racks', bot: 'gw', config: { ek_ca_files: ['/x.pem'], firmware_profiles: ['lab-pinned'] } as T },
      ] as never,
  };
  let ak = softwareAk();
  const facts = (): Record<string, unknown> => ({
    tpm_rule: 'racks',
    ak_public: ak.akPublic,
    firmware_profile: 'lab-pinned',
    tpm_clock_ms: 0,
    tpm_reset_count: 3,
    tpm_restart_count: 0,
    attestation: { at: 1, ok: true, via: 'join', profile: 'lab-pinned' },
  });
  let n = 0;
  return {
    dir,
    firmware,
    /** Let the profile directory's re-check interval (1 s) pass. */
    later: () => void (now += 1_001),
    rejoin: (a = softwareAk()) => void (ak = a),
    ak: () => ak,
    /** The verdict on a fresh quote (by `signer`, default the instance's AK) of `values`, bound to a new request. */
    judge: async (values: Record<number, string>, o: { signer?: KeyObject; binding?: Buffer } = {}) => {
      const binding = createHash('sha256').update(`request ${n++}`).digest();
      const evidence = quote(o.signer ?? ak.key, o.binding ?? binding, values);
      return tpmReattest({ evidence, instanceFacts: facts(), binding, now: Date.now() }, port, firmware, aks);
    },
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
const failed = (v: ReattestVerdict): string | undefined => (v.ok ? undefined : v.error.code);

describe('judgements with warm caches', () => {
  it('a profile edited on disk judges the next quote once the directory is re-read (pcr_mismatch with the diff)', async () => {
    const is = issuer();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    const before = is.firmware.resolved(['lab-pinned'], 'racks');
    writeFileSync(join(is.dir, 'lab-pinned.yaml'), profile({ 23: ONES }));
    is.later();
    const v = await is.judge({ 23: ZERO });
    expect(failed(v)).toBe('pcr_mismatch');
    expect(v.ok ? [] : v.diff).toEqual([{ bank: 'sha256', pcr: 23, expected: [ONES], got: ZERO }]);
    expect(is.firmware.resolved(['lab-pinned'], 'racks')).not.toBe(before);
    expect(failed(await is.judge({ 23: ONES }))).toBeUndefined();
    is.close();
  });

  it('a profile edited to select other PCRs refuses with pcr_selection_changed, not the old selection’s verdict', async () => {
    const is = issuer();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    writeFileSync(join(is.dir, 'lab-pinned.yaml'), profile({ 22: ZERO, 23: ZERO }));
    is.later();
    await expect(is.judge({ 23: ZERO })).rejects.toMatchObject({ code: 'pcr_selection_changed' });
    expect(failed(await is.judge({ 22: ZERO, 23: ZERO }))).toBeUndefined();
    is.close();
  });

  it('a profile removed is unknown at every attestation, not served from what was kept', async () => {
    const is = issuer();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    rmSync(join(is.dir, 'lab-pinned.yaml'));
    is.later();
    await expect(is.judge({ 23: ZERO })).rejects.toMatchObject({ code: 'firmware_profile_unknown' });
    is.later();
    await expect(is.judge({ 23: ZERO })).rejects.toMatchObject({ code: 'firmware_profile_unknown' });
    is.close();
  });

  it('a changed PCR value is refused with the diff, and the restored value passes again', async () => {
    const is = issuer();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    const v = await is.judge({ 23: ONES });
    expect(failed(v)).toBe('pcr_mismatch');
    expect(v.ok ? [] : v.diff).toEqual([{ bank: 'sha256', pcr: 23, expected: [ZERO], got: ONES }]);
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    is.close();
  });

  it('after a re-join the new AK is the one that counts: a quote by the old AK is quote_signature_invalid', async () => {
    const is = issuer();
    const old = is.ak();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    is.rejoin();
    expect(failed(await is.judge({ 23: ZERO }, { signer: old.key }))).toBe('quote_signature_invalid');
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    // And back: the first AK's entry still verifies only its own quotes.
    is.rejoin(old);
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    expect(failed(await is.judge({ 23: ZERO }, { signer: softwareAk().key }))).toBe('quote_signature_invalid');
    is.close();
  });

  it('a recorded AK that is not an attestation key is refused at every attestation (a refusal is never kept)', async () => {
    const is = issuer();
    is.rejoin(softwareAk(akTemplate().objectAttributes & ~TPMA_OBJECT.restricted));
    await expect(is.judge({ 23: ZERO })).rejects.toMatchObject({ code: 'ak_attributes_invalid' });
    await expect(is.judge({ 23: ZERO })).rejects.toMatchObject({ code: 'ak_attributes_invalid' });
    is.close();
  });

  it('a quote bound to an earlier request is quote_nonce_mismatch with everything warm', async () => {
    const is = issuer();
    const earlier = createHash('sha256').update('an earlier renewal').digest();
    expect(failed(await is.judge({ 23: ZERO }))).toBeUndefined();
    expect(failed(await is.judge({ 23: ZERO }, { binding: earlier }))).toBe('quote_nonce_mismatch');
    is.close();
  });
});

describe('FirmwareProfiles.resolved', () => {
  it('is kept per name list: another list, or the same names in another order, is resolved on its own', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-resolved-'));
    writeFileSync(join(dir, 'a.yaml'), profile({ 23: ZERO }).replace('lab-pinned', 'a'));
    writeFileSync(
      join(dir, 'b.yaml'),
      profile({ 16: ZERO }).replace('lab-pinned', 'b').replace('sha256', 'sha1').replace(ZERO, '00'.repeat(20)),
    );
    const fp = new FirmwareProfiles(dir, { now: () => 0 });
    const a = fp.resolved(['a'], 'r1');
    expect(a.profiles.map((p) => p.name)).toEqual(['a']);
    expect(a.selection).toEqual([{ bank: 'sha256', pcrs: [23] }]);
    expect(fp.resolved(['a'], 'r2')).toBe(a);
    const b = fp.resolved(['b'], 'r1');
    expect(b.selection).toEqual([{ bank: 'sha1', pcrs: [16] }]);
    expect(fp.resolved(['a', 'b'], 'r').profiles.map((p) => p.name)).toEqual(['a', 'b']);
    expect(fp.resolved(['b', 'a'], 'r').profiles.map((p) => p.name)).toEqual(['b', 'a']);
    expect(fp.resolved(['a', 'b'], 'r').selectionKey).toBe('sha1:16 sha256:23');
    // Shared between requests, so frozen: a caller cannot change what the next one gets.
    expect(() => (a.selection[0]!.pcrs as number[]).push(1)).toThrow(TypeError);
    expect(() => fp.resolved(['a', 'c'], 'r9')).toThrow(/join_rule r9 names firmware profile "c"/);
    rmSync(dir, { recursive: true, force: true });
  });
});
