/**
 * TPMS_NV_PUBLIC (Part 2 §13.5): an NV index's public area; its Name hashes these exact bytes.
 */
import { tpm2bDigest } from './basic.js';
import { codec, sized } from './codec.js';
import type { Codec, Sized } from './codec.js';

export interface TpmsNvPublic {
  nvIndex: number;
  nameAlg: number;
  /** TPMA_NV bits. */
  attributes: number;
  authPolicy: Uint8Array;
  dataSize: number;
}

export const tpmsNvPublic: Codec<TpmsNvPublic> = codec(
  'TPMS_NV_PUBLIC',
  (r) => ({
    nvIndex: r.u32('nvIndex'),
    nameAlg: r.u16('nameAlg'),
    attributes: r.u32('attributes'),
    authPolicy: tpm2bDigest.read(r),
    dataSize: r.u16('dataSize'),
  }),
  (w, v) => {
    w.u32(v.nvIndex)
      .u16(v.nameAlg)
      .u32(v.attributes >>> 0);
    tpm2bDigest.write(w, v.authPolicy);
    w.u16(v.dataSize);
  },
);

/** Part 2 §13.6 TPM2B_NV_PUBLIC, keeping the exact bytes. */
export const tpm2bNvPublic = sized('TPM2B_NV_PUBLIC', tpmsNvPublic);
export type Tpm2bNvPublic = Sized<TpmsNvPublic>;
