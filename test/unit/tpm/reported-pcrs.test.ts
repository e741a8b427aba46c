/**
 * join/tpm/pcrs.ts reportedPcrs, made cheaper for issue #16's renewal bench (no string key per
 * PCR): it must accept and refuse exactly what the version before it did, with the same message
 * (the first failure: reported twice, then not asked for, then missing) and the same values in
 * the same order. The oracle below is that version, verbatim in behaviour; thousands of random
 * reports and selections (duplicates, extras, omissions, two banks, a bank listed twice) are
 * judged by both.
 */
import { describe, expect, it } from 'vitest';
import type { QuotedPcrs } from '../../../src/attest/quote.js';
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
    const v = (bank: PcrBankName, pcr: number): ReportedPcr => ({ bank, pcr, digest: '00'.repeat(32) });
    expect(() => reportedPcrs([v('sha256', 0), v('sha256', 9), v('sha256', 0)], sel)).toThrow(
      'sha256 PCR 0 is reported twice',
    );
    expect(() => reportedPcrs([v('sha256', 0), v('sha1', 4)], sel)).toThrow(
      'sha1 PCR 4 is reported but was not asked for',
    );
    expect(() => reportedPcrs([v('sha256', 4)], sel)).toThrow('the value of sha256 PCR 0 is missing from pcr_values');
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
            .repeat(32),
        })),
      );
      // A bank listed twice may list a PCR twice: the report then holds it twice too, unless deduplicated.
      if (rnd() < 0.7)
        values = values.filter((v, k) => values.findIndex((w) => w.bank === v.bank && w.pcr === v.pcr) === k);
      if (rnd() < 0.2 && values.length > 0) values.splice(Math.floor(rnd() * values.length), 1);
      if (rnd() < 0.2 && values.length > 0) values.push({ ...pick(values) });
      if (rnd() < 0.2) values.push({ bank: pick(BANKS), pcr: Math.floor(rnd() * 10), digest: 'ff'.repeat(32) });
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
