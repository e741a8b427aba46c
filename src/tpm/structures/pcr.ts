/**
 * PCR selections (Part 2 §10.6.2 TPMS_PCR_SELECTION, §10.9.7 TPML_PCR_SELECTION): per bank, a
 * bitmap where bit (i mod 8) of byte ⌊i/8⌋ selects PCR i.
 */
import { codec, list } from './codec.js';
import type { Codec } from './codec.js';

export interface TpmsPcrSelection {
  hash: number;
  /** The raw bitmap (sizeofSelect bytes, normally 3 for 24 PCRs). */
  pcrSelect: Uint8Array;
}

export const tpmsPcrSelection: Codec<TpmsPcrSelection> = codec(
  'TPMS_PCR_SELECTION',
  (r) => {
    const hash = r.u16('TPMS_PCR_SELECTION.hash');
    const size = r.u8('sizeofSelect');
    if (size > 32) r.fail(`sizeofSelect ${size} is too large`);
    return { hash, pcrSelect: r.bytes(size, 'pcrSelect') };
  },
  (w, v) => void w.u16(v.hash).u8(v.pcrSelect.length).bytes(v.pcrSelect),
);

export const tpmlPcrSelection = list('TPML_PCR_SELECTION', tpmsPcrSelection, 16);
export type TpmlPcrSelection = TpmsPcrSelection[];

/** A friendlier form: which PCRs of which bank. */
export interface PcrBankSelection {
  hash: number;
  pcrs: readonly number[];
}

/** Build a TPML_PCR_SELECTION from `{ hash, pcrs }` entries (3-byte bitmaps, 24 PCRs). */
export function pcrSelection(...banks: PcrBankSelection[]): TpmlPcrSelection {
  return banks.map(({ hash, pcrs }) => {
    const max = pcrs.length === 0 ? 0 : Math.max(...pcrs);
    const bitmap = new Uint8Array(Math.max(3, (max >> 3) + 1));
    for (const p of pcrs) {
      if (!Number.isInteger(p) || p < 0 || p > 255) throw new TypeError(`bad PCR index ${p}`);
      bitmap[p >> 3]! |= 1 << (p & 7);
    }
    return { hash, pcrSelect: bitmap };
  });
}

/** The selected PCR indices of one bank, ascending (the order the TPM hashes them in). */
export function selectedPcrs(sel: TpmsPcrSelection): number[] {
  const out: number[] = [];
  for (let i = 0; i < sel.pcrSelect.length * 8; i++) if (sel.pcrSelect[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

/** Flatten a selection to `{ hash, pcrs }` entries. */
export function describeSelection(sel: TpmlPcrSelection): PcrBankSelection[] {
  return sel.map((s) => ({ hash: s.hash, pcrs: selectedPcrs(s) }));
}
