/** PCR values as the tpm method's messages report them, shared by the join (server.ts) and later attestations (reattest.ts). */
import { SigilError } from '../../errors.js';
import type { QuotedPcrs } from '../../attest/quote.js';
import type { PcrBankName, PcrSelectionWire } from './wire.js';

export interface ReportedPcr {
  bank: PcrBankName;
  pcr: number;
  digest: string;
}

/** A PCR of each bank holds a digest of the bank's hash: its size in bytes. */
const PCR_VALUE_BYTES: Readonly<Record<PcrBankName, number>> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

/**
 * The reported PCR values, which must be exactly the requested selection (`pcr_digest_mismatch`).
 * Checked in this order, the first failure reported: a value not of its bank's digest size, a PCR
 * reported twice (in report order), one reported but not asked for (in report order), one asked
 * for but missing (in selection order).
 *
 * Why the size: the quote signs only the hash of the values joined end to end (TPM 2.0 Part 1
 * §18.5.2 pcrDigest), not where one ends and the next begins. Without the size check the same
 * signed bytes could be cut at other places — a 64-byte "sha256" value followed by a 20-byte one
 * — so that an extended PCR is shown holding its neighbour's untouched value (review of issue #16).
 * Per renewal with a quote (issue #16's bench): no string key per PCR, one Map per bank.
 */
export function reportedPcrs(values: readonly ReportedPcr[], selection: PcrSelectionWire): QuotedPcrs {
  const out = new Map<PcrBankName, Map<number, Buffer>>();
  for (const v of values) {
    let bank = out.get(v.bank);
    if (bank === undefined) {
      bank = new Map<number, Buffer>();
      out.set(v.bank, bank);
    }
    const size = PCR_VALUE_BYTES[v.bank];
    if (v.digest.length !== 2 * size)
      throw new SigilError(
        'pcr_digest_mismatch',
        `${v.bank} PCR ${v.pcr} is reported as ${v.digest.length / 2} bytes; a ${v.bank} PCR holds ${size}`,
      );
    if (bank.has(v.pcr)) throw new SigilError('pcr_digest_mismatch', `${v.bank} PCR ${v.pcr} is reported twice`);
    bank.set(v.pcr, Buffer.from(v.digest, 'hex'));
  }
  for (const [bank, vals] of out)
    for (const pcr of vals.keys())
      if (!isSelected(selection, bank, pcr))
        throw new SigilError('pcr_digest_mismatch', `${bank} PCR ${pcr} is reported but was not asked for`);
  for (const s of selection)
    for (const pcr of s.pcrs)
      if (!out.get(s.bank)?.has(pcr))
        throw new SigilError('pcr_digest_mismatch', `the value of ${s.bank} PCR ${pcr} is missing from pcr_values`);
  return out;
}

/** `bank` PCR `pcr` is in the selection (a bank may be listed more than once). */
function isSelected(selection: PcrSelectionWire, bank: PcrBankName, pcr: number): boolean {
  for (const s of selection) if (s.bank === bank && s.pcrs.includes(pcr)) return true;
  return false;
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
