/**
 * join/tpm/fresh-evidence.ts quoteKept, against a scripted TPM: the PCR values sent with a quote
 * are always values whose hash is the digest the TPM quoted — kept from the last quote when they
 * are, read after the quote when those are, read and quoted afresh otherwise — so a PCR extended
 * at any moment never yields evidence the issuer refuses as pcr_digest_mismatch.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { quoteKept } from '../../../src/join/tpm/fresh-evidence.js';
import { KeptTpmState } from '../../../src/join/tpm/kept-state.js';
import type { PcrSelectionWire } from '../../../src/join/tpm/wire.js';
import { TPM_ALG, TPM_ST } from '../../../src/tpm/constants.js';
import type { PcrValue, SignedAttestation, Tpm, TpmKey } from '../../../src/tpm/tpm.js';

const SEL: PcrSelectionWire = [{ bank: 'sha256', pcrs: [0, 16] }];
const pcrs = (v16: number): PcrValue[] => [
  { hash: TPM_ALG.SHA256, pcr: 0, digest: Buffer.alloc(32, 0xaa) },
  { hash: TPM_ALG.SHA256, pcr: 16, digest: Buffer.alloc(32, v16) },
];
const digestOf = (vs: PcrValue[]): Buffer => {
  const h = createHash('sha256');
  for (const v of vs) h.update(v.digest);
  return h.digest();
};

/** The PCR digest a quote signed (the scripted TPM answers only quotes). */
const quoted = (q: SignedAttestation): Uint8Array => {
  const a = q.attest.value;
  if (a.type !== TPM_ST.ATTEST_QUOTE) throw new Error(`not a quote: ${a.type}`);
  return a.attested.pcrDigest;
};

/** A TPM whose PCR 16 takes, at each command, the next value of `script` (the last one stays). */
function scriptedTpm(script: number[]): { tpm: Tpm; log: string[] } {
  const log: string[] = [];
  let i = 0;
  const now = (): PcrValue[] => pcrs(script[Math.min(i++, script.length - 1)]!);
  const tpm = {
    async pcrRead() {
      log.push('PCR_Read');
      // The TPM answers in its own order: PCR 16 first.
      return { updateCounter: i, values: [...now()].reverse() };
    },
    async quote(): Promise<SignedAttestation> {
      log.push('Quote');
      return {
        attest: {
          value: { type: TPM_ST.ATTEST_QUOTE, attested: { pcrDigest: digestOf(now()) } },
          bytes: new Uint8Array(8),
        },
        signature: { sigAlg: TPM_ALG.ECDSA, hash: TPM_ALG.SHA256 },
      } as unknown as SignedAttestation;
    },
  } as unknown as Tpm;
  return { tpm, log };
}

const AK = {} as TpmKey;
const nonce = new Uint8Array(32);
const hex16 = (vs: PcrValue[]): string => Buffer.from(vs.find((v) => v.pcr === 16)!.digest).toString('hex');

describe('quoteKept', () => {
  it('with nothing kept, reads then quotes, and keeps the values', async () => {
    const kept = new KeptTpmState();
    const { tpm, log } = scriptedTpm([1]);
    const r = await quoteKept(tpm, kept, AK, nonce, SEL);
    expect(log).toEqual(['PCR_Read', 'Quote']);
    expect(digestOf(r.values)).toEqual(quoted(r.quote));
    expect(kept.lastPcrValues(SEL)).toEqual(r.values);
  });

  it('with the kept values still current, quotes only', async () => {
    const kept = new KeptTpmState();
    kept.keepPcrValues(SEL, pcrs(1));
    const { tpm, log } = scriptedTpm([1]);
    const r = await quoteKept(tpm, kept, AK, nonce, SEL);
    expect(log).toEqual(['Quote']);
    expect(r.values).toEqual(pcrs(1));
  });

  it('with a PCR extended since, takes the values read after the quote when they are the quoted ones', async () => {
    const kept = new KeptTpmState();
    kept.keepPcrValues(SEL, pcrs(1));
    const { tpm, log } = scriptedTpm([2]);
    const r = await quoteKept(tpm, kept, AK, nonce, SEL);
    expect(log).toEqual(['Quote', 'PCR_Read']);
    expect(hex16(r.values)).toBe('02'.repeat(32));
    expect(r.values.map((v) => v.pcr)).toEqual([0, 16]);
    expect(digestOf(r.values)).toEqual(quoted(r.quote));
    expect(kept.lastPcrValues(SEL)).toEqual(r.values);
  });

  it('with a PCR extended again between the quote and the read, never sends values that are not the quoted ones', async () => {
    const kept = new KeptTpmState();
    kept.keepPcrValues(SEL, pcrs(1));
    // Quote sees 2, the read after it sees 3; then the PCR settles at 3.
    const { tpm, log } = scriptedTpm([2, 3]);
    const r = await quoteKept(tpm, kept, AK, nonce, SEL);
    expect(log).toEqual(['Quote', 'PCR_Read', 'PCR_Read', 'Quote']);
    expect(hex16(r.values)).toBe('03'.repeat(32));
    expect(digestOf(r.values)).toEqual(quoted(r.quote));
  });
});
