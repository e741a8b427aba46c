/**
 * TPMS_CONTEXT (Part 2 §14.6): a saved object or session, opaque outside the TPM.
 */
import { tpm2bContextData } from './basic.js';
import { codec } from './codec.js';
import type { Codec } from './codec.js';

export interface TpmsContext {
  sequence: bigint;
  savedHandle: number;
  hierarchy: number;
  contextBlob: Uint8Array;
}

export const tpmsContext: Codec<TpmsContext> = codec(
  'TPMS_CONTEXT',
  (r) => ({
    sequence: r.u64('sequence'),
    savedHandle: r.u32('savedHandle'),
    hierarchy: r.u32('hierarchy'),
    contextBlob: tpm2bContextData.read(r),
  }),
  (w, v) => {
    w.u64(v.sequence).u32(v.savedHandle).u32(v.hierarchy);
    tpm2bContextData.write(w, v.contextBlob);
  },
);
