/**
 * TPMS_CAPABILITY_DATA (Part 2 §10.10.2), the answer of GetCapability, discriminated on the
 * capability asked for.
 */
import { TPM_CAP } from '../constants.js';
import { codec, list, u16, u32 } from './codec.js';
import type { Codec } from './codec.js';
import { tpmlPcrSelection } from './pcr.js';
import type { TpmlPcrSelection } from './pcr.js';

type CAP = typeof TPM_CAP;

/** Part 2 §10.8.1 TPMS_ALG_PROPERTY. */
export interface TpmsAlgProperty {
  alg: number;
  /** TPMA_ALGORITHM bits. */
  algProperties: number;
}

/** Part 2 §10.8.2 TPMS_TAGGED_PROPERTY. */
export interface TpmsTaggedProperty {
  property: number;
  value: number;
}

const tpmsAlgProperty: Codec<TpmsAlgProperty> = codec(
  'TPMS_ALG_PROPERTY',
  (r) => ({ alg: r.u16('alg'), algProperties: r.u32('algProperties') }),
  (w, v) => void w.u16(v.alg).u32(v.algProperties),
);

const tpmsTaggedProperty: Codec<TpmsTaggedProperty> = codec(
  'TPMS_TAGGED_PROPERTY',
  (r) => ({ property: r.u32('property'), value: r.u32('value') }),
  (w, v) => void w.u32(v.property).u32(v.value),
);

const MAX_CAP = 4096;
const tpmlAlgProperty = list('TPML_ALG_PROPERTY', tpmsAlgProperty, MAX_CAP);
const tpmlHandle = list('TPML_HANDLE', u32, MAX_CAP);
const tpmlCca = list('TPML_CCA', u32, MAX_CAP);
const tpmlTaggedTpmProperty = list('TPML_TAGGED_TPM_PROPERTY', tpmsTaggedProperty, MAX_CAP);
const tpmlEccCurve = list('TPML_ECC_CURVE', u16, MAX_CAP);

export type TpmsCapabilityData =
  | { capability: CAP['ALGS']; algorithms: TpmsAlgProperty[] }
  | { capability: CAP['HANDLES']; handles: number[] }
  | { capability: CAP['COMMANDS']; commands: number[] }
  | { capability: CAP['PCRS']; assignedPcr: TpmlPcrSelection }
  | { capability: CAP['TPM_PROPERTIES']; tpmProperties: TpmsTaggedProperty[] }
  | { capability: CAP['ECC_CURVES']; eccCurves: number[] };

export const tpmsCapabilityData: Codec<TpmsCapabilityData> = codec(
  'TPMS_CAPABILITY_DATA',
  (r) => {
    const capability = r.u32('capability');
    switch (capability) {
      case TPM_CAP.ALGS:
        return { capability, algorithms: tpmlAlgProperty.read(r) };
      case TPM_CAP.HANDLES:
        return { capability, handles: tpmlHandle.read(r) };
      case TPM_CAP.COMMANDS:
        return { capability, commands: tpmlCca.read(r) };
      case TPM_CAP.PCRS:
        return { capability, assignedPcr: tpmlPcrSelection.read(r) };
      case TPM_CAP.TPM_PROPERTIES:
        return { capability, tpmProperties: tpmlTaggedTpmProperty.read(r) };
      case TPM_CAP.ECC_CURVES:
        return { capability, eccCurves: tpmlEccCurve.read(r) };
      default:
        return r.fail(`unsupported capability 0x${capability.toString(16)}`);
    }
  },
  (w, v) => {
    w.u32(v.capability);
    switch (v.capability) {
      case TPM_CAP.ALGS:
        return tpmlAlgProperty.write(w, v.algorithms);
      case TPM_CAP.HANDLES:
        return tpmlHandle.write(w, v.handles);
      case TPM_CAP.COMMANDS:
        return tpmlCca.write(w, v.commands);
      case TPM_CAP.PCRS:
        return tpmlPcrSelection.write(w, v.assignedPcr);
      case TPM_CAP.TPM_PROPERTIES:
        return tpmlTaggedTpmProperty.write(w, v.tpmProperties);
      case TPM_CAP.ECC_CURVES:
        return tpmlEccCurve.write(w, v.eccCurves);
    }
  },
);
