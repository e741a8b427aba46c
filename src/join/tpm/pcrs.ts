/** PCR values as the tpm method's messages report them, shared by the join (server.ts) and later attestations (reattest.ts). */
import { SigilError } from '../../errors.js';
import type { QuotedPcrs } from '../../attest/quote.js';
import { PCR_BANK_ALGS, type PcrBankName, type PcrSelectionWire } from './wire.js';

export interface ReportedPcr {
  bank: PcrBankName;
  pcr: number;
  digest: string;
}

/** The reported PCR values, which must be exactly the requested selection (`pcr_digest_mismatch`). */
export function reportedPcrs(values: readonly ReportedPcr[], selection: PcrSelectionWire): QuotedPcrs {
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
    const [bank, pcr] = w.split(':') as [keyof typeof PCR_BANK_ALGS, string];
    if (!out.get(bank)?.has(Number(pcr)))
      throw new SigilError('pcr_digest_mismatch', `the value of ${bank} PCR ${pcr} is missing from pcr_values`);
  }
  return out;
}

/** The quoted values as instance facts: `{ bank: { pcr: hex } }`. */
export function pcrFacts(quoted: QuotedPcrs): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [bank, values] of quoted)
    out[bank] = Object.fromEntries(
      [...values].sort(([a], [b]) => a - b).map(([p, v]) => [String(p), v.toString('hex')]),
    );
  return out;
}
