/**
 * TPMS_CREATION_DATA (Part 2 §15.1): what was true when an object was created; its hash is
 * what CertifyCreation signs.
 */
import { tpm2bData, tpm2bDigest, tpm2bName } from './basic.js';
import { codec, sized } from './codec.js';
import type { Codec } from './codec.js';
import { tpmlPcrSelection } from './pcr.js';
import type { TpmlPcrSelection } from './pcr.js';

export interface TpmsCreationData {
  pcrSelect: TpmlPcrSelection;
  pcrDigest: Uint8Array;
  /** TPMA_LOCALITY. */
  locality: number;
  parentNameAlg: number;
  parentName: Uint8Array;
  parentQualifiedName: Uint8Array;
  outsideInfo: Uint8Array;
}

export const tpmsCreationData: Codec<TpmsCreationData> = codec(
  'TPMS_CREATION_DATA',
  (r) => ({
    pcrSelect: tpmlPcrSelection.read(r),
    pcrDigest: tpm2bDigest.read(r),
    locality: r.u8('locality'),
    parentNameAlg: r.u16('parentNameAlg'),
    parentName: tpm2bName.read(r),
    parentQualifiedName: tpm2bName.read(r),
    outsideInfo: tpm2bData.read(r),
  }),
  (w, v) => {
    tpmlPcrSelection.write(w, v.pcrSelect);
    tpm2bDigest.write(w, v.pcrDigest);
    w.u8(v.locality).u16(v.parentNameAlg);
    tpm2bName.write(w, v.parentName);
    tpm2bName.write(w, v.parentQualifiedName);
    tpm2bData.write(w, v.outsideInfo);
  },
);

/** Part 2 §15.2 TPM2B_CREATION_DATA. */
export const tpm2bCreationData = sized('TPM2B_CREATION_DATA', tpmsCreationData);
