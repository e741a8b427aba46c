/**
 * join/tpm/pcrs.ts reportedPcrs, made cheaper for issue #16's renewal bench (no string key per
 * PCR): it must accept and refuse exactly what the version before it did, with the same message
 * (the first failure: reported twice, then not asked for, then missing) and the same values in
 * the same order. The oracle below is that version, verbatim in behaviour; thousands of random
 * reports and selections (duplicates, extras, omissions, two banks, a bank listed twice) are
 * judged by both.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkPcrDigest, type QuoteAttest, type QuotedPcrs } from '../../../src/attest/quote.js';
import type { SignedAttest } from '../../../src/attest/structures.js';
import { TPM_ALG } from '../../../src/tpm/constants.js';
import { SigilError } from '../../../src/errors.js';
import { reportedPcrs, type ReportedPcr } from '../../../src/join/tpm/pcrs.js';
import type { PcrBankName, PcrSelectionWire } from '../../../src/join/tpm/wire.js';

/** The implementation before issue #16's change. */
function oracle(values: readonly ReportedPcr[], selection: PcrSelectionWire): QuotedPcrs {
  const out = new Map<PcrBankName, Map<number, Buffer>>();
  for (const v of values) {
    const bank = out.get(v.bank) ?? new Map<number, Buffer>();
    if (bank.has(v.pcr)) throw new SigilError('pcr_digest_mismatch', `${v.bank} PCR ${v.pcr} is reported twice`);
    bank.set(v.pcr, Buffer.from(v.digest, 'hex'));
    out.set(v.bank, bank);
  }
  const want = new Set(selection.flatMap((s) => s.pcrs.map((p) => `${s.bank}:${p}`)));
  for (const [bank, vals] of out)
    for (const pcr of vals.keys())
      if (!want.has(`${bank}:${pcr}`))
        throw new SigilError('pcr_digest_mismatch', `${bank} PCR ${pcr} is reported but was not asked for`);
  for (const w of want) {
    const [bank, pcr] = w.split(':') as [PcrBankName, string];
    if (!out.get(bank)?.has(Number(pcr)))
      throw new SigilError('pcr_digest_mismatch', `the value of ${bank} PCR ${pcr} is missing from pcr_values`);
  }
  return out;
}

type Outcome =
  { ok: true; value: Array<[string, Array<[number, string]>]> } | { ok: false; code: string; message: string };

function outcome(f: () => QuotedPcrs): Outcome {
  try {
    const m = f();
    return { ok: true, value: [...m].map(([b, v]) => [b, [...v].map(([p, d]) => [p, d.toString('hex')])]) };
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    return { ok: false, code: e.code, message: e.message };
  }
}

/** A small deterministic PRNG (mulberry32): the same cases every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BANKS: PcrBankName[] = ['sha256', 'sha1', 'sha384'];
const BYTES: Record<PcrBankName, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

describe('reportedPcrs', () => {
  it('returns the values of exactly the selection, per bank, in report order', () => {
    const selection: PcrSelectionWire = [{ bank: 'sha256', pcrs: [0, 4, 7] }];
    const values: ReportedPcr[] = [7, 0, 4].map((p) => ({
      bank: 'sha256',
      pcr: p,
      digest: p.toString(16).padStart(64, '0'),
    }));
    const got = reportedPcrs(values, selection);
    expect([...got.get('sha256')!.keys()]).toEqual([7, 0, 4]);
    expect(got.get('sha256')!.get(7)!.toString('hex')).toBe('7'.padStart(64, '0'));
  });

  it('refuses, naming the PCR: reported twice, not asked for, missing (that order)', () => {
    const sel: PcrSelectionWire = [{ bank: 'sha256', pcrs: [0, 4] }];
    const v = (bank: PcrBankName, pcr: number): ReportedPcr => ({ bank, pcr, digest: '00'.repeat(BYTES[bank]) });
    expect(() => reportedPcrs([v('sha256', 0), v('sha256', 9), v('sha256', 0)], sel)).toThrow(
      'sha256 PCR 0 is reported twice',
    );
    expect(() => reportedPcrs([v('sha256', 0), v('sha1', 4)], sel)).toThrow(
      'sha1 PCR 4 is reported but was not asked for',
    );
    expect(() => reportedPcrs([v('sha256', 4)], sel)).toThrow('the value of sha256 PCR 0 is missing from pcr_values');
  });

  it("refuses a value not of its bank's digest size, before anything else", () => {
    const sel: PcrSelectionWire = [{ bank: 'sha256', pcrs: [0, 4] }];
    for (const bytes of [20, 31, 33, 48, 64, 0])
      expect(() =>
        reportedPcrs(
          [
            { bank: 'sha256', pcr: 0, digest: '00'.repeat(32) },
            { bank: 'sha256', pcr: 4, digest: '00'.repeat(bytes) },
          ],
          sel,
        ),
      ).toThrow(`sha256 PCR 4 is reported as ${bytes} bytes; a sha256 PCR holds 32`);
    expect(() => reportedPcrs([{ bank: 'sha1', pcr: 4, digest: '00'.repeat(32) }], sel)).toThrow(
      'sha1 PCR 4 is reported as 32 bytes; a sha1 PCR holds 20',
    );
  });

  it('refuses the attack the size check is for: the quoted bytes cut at other places to move a value', () => {
    // Selection sha256 {9..15}; PCR 10 was extended, 11..15 are zero. The TPM signs only the hash
    // of the seven values joined, so the same bytes cut 64,32,20,20,20,20,48 still hash to the
    // quoted digest — and "PCR 10" then reads as PCR 11's zero.
    const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
    const pcrs = [9, 10, 11, 12, 13, 14, 15];
    const real = [
      sha(Buffer.from('pcr9')),
      sha(Buffer.from('extended')),
      ...Array.from({ length: 5 }, () => Buffer.alloc(32)),
    ];
    const joined = Buffer.concat(real);
    const info = {
      attested: {
        pcrSelect: [{ hash: TPM_ALG.SHA256, pcrSelect: Uint8Array.from([0x00, 0xfe, 0x00]) }],
        pcrDigest: sha(joined),
      },
    } as unknown as QuoteAttest;
    const quote = { signature: { hash: TPM_ALG.SHA256 } } as unknown as SignedAttest;
    const sel: PcrSelectionWire = [{ bank: 'sha256', pcrs }];
    let at = 0;
    const forged: ReportedPcr[] = [64, 32, 20, 20, 20, 20, 48].map((n, i) => {
      const digest = joined.subarray(at, (at += n)).toString('hex');
      return { bank: 'sha256', pcr: pcrs[i]!, digest };
    });
    expect(forged[1]!.digest).toBe('00'.repeat(32)); // PCR 10 would read as untouched
    // The forged values hash to the quoted digest: only their sizes give them away.
    const asQuoted: QuotedPcrs = new Map([
      ['sha256', new Map(forged.map((f) => [f.pcr, Buffer.from(f.digest, 'hex')]))],
    ]);
    expect(() => checkPcrDigest(quote, info, asQuoted)).not.toThrow();
    expect(() => reportedPcrs(forged, sel)).toThrow('sha256 PCR 9 is reported as 64 bytes; a sha256 PCR holds 32');
    // The honest report is accepted and shows PCR 10's real value.
    const honest = reportedPcrs(
      pcrs.map((pcr, i) => ({ bank: 'sha256', pcr, digest: real[i]!.toString('hex') })),
      sel,
    );
    expect(() => checkPcrDigest(quote, info, honest)).not.toThrow();
    expect(honest.get('sha256')!.get(10)).toEqual(real[1]);
  });

  it('judges 20,000 random reports exactly as the implementation before it did', () => {
    const rnd = prng(16);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const kinds = { twice: 0, extra: 0, missing: 0, ok: 0 };
    for (let i = 0; i < 20_000; i++) {
      const selection: PcrSelectionWire = [];
      for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
        const pcrs = [...new Set(Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => Math.floor(rnd() * 8)))];
        selection.push({ bank: pick(BANKS.slice(0, 2)), pcrs });
      }
      // Start from the exact selection, then perhaps drop, duplicate, add or reorder.
      let values: ReportedPcr[] = selection.flatMap((s) =>
        s.pcrs.map((pcr) => ({
          bank: s.bank,
          pcr,
          digest: Math.floor(rnd() * 256)
            .toString(16)
            .padStart(2, '0')
            .repeat(BYTES[s.bank]),
        })),
      );
      // A bank listed twice may list a PCR twice: the report then holds it twice too, unless deduplicated.
      if (rnd() < 0.7)
        values = values.filter((v, k) => values.findIndex((w) => w.bank === v.bank && w.pcr === v.pcr) === k);
      if (rnd() < 0.2 && values.length > 0) values.splice(Math.floor(rnd() * values.length), 1);
      if (rnd() < 0.2 && values.length > 0) values.push({ ...pick(values) });
      if (rnd() < 0.2) {
        const bank = pick(BANKS);
        values.push({ bank, pcr: Math.floor(rnd() * 10), digest: 'ff'.repeat(BYTES[bank]) });
      }
      if (rnd() < 0.5) values.sort(() => rnd() - 0.5);
      const want = outcome(() => oracle(values, selection));
      expect(outcome(() => reportedPcrs(values, selection))).toEqual(want);
      if (want.ok) kinds.ok++;
      else if (want.message.endsWith('reported twice')) kinds.twice++;
      else if (want.message.endsWith('not asked for')) kinds.extra++;
      else kinds.missing++;
    }
    // Every outcome was exercised in earnest.
    for (const n of Object.values(kinds)) expect(n).toBeGreaterThan(1_000);
  });
});
