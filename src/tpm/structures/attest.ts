/**
 * TPMS_ATTEST (Part 2 §10.12.12): what Quote, Certify, CertifyCreation, GetTime and NV_Certify
 * sign. TPM2B_ATTEST keeps the exact bytes, because the signature covers those bytes.
 *
 * The reader refuses anything whose magic is not TPM_GENERATED_VALUE: only the TPM itself
 * produces structures with that prefix (a restricted key will not sign external data that
 * starts with it), which is what makes an attestation trustworthy.
 */
import { TPM_GENERATED_VALUE, TPM_ST } from '../constants.js';
import type { TpmReader } from '../marshal.js';
import { tpm2bData, tpm2bDigest, tpm2bMaxNvBuffer, tpm2bName, tpmsClockInfo, tpmsTimeInfo } from './basic.js';
import type { TpmsClockInfo, TpmsTimeInfo } from './basic.js';
import { codec, sized } from './codec.js';
import type { Codec, Sized } from './codec.js';
import { tpmlPcrSelection } from './pcr.js';
import type { TpmlPcrSelection } from './pcr.js';

type ST = typeof TPM_ST;

/** Part 2 §10.12.4 TPMS_QUOTE_INFO. */
export interface TpmsQuoteInfo {
  pcrSelect: TpmlPcrSelection;
  /** H_signHash(selected PCR values concatenated in selection order). */
  pcrDigest: Uint8Array;
}

/** Part 2 §10.12.3 TPMS_CERTIFY_INFO. */
export interface TpmsCertifyInfo {
  /** The certified object's Name. */
  name: Uint8Array;
  qualifiedName: Uint8Array;
}

/** Part 2 §10.12.8 TPMS_CREATION_INFO. */
export interface TpmsCreationInfo {
  objectName: Uint8Array;
  creationHash: Uint8Array;
}

/** Part 2 §10.12.7 TPMS_TIME_ATTEST_INFO. */
export interface TpmsTimeAttestInfo {
  time: TpmsTimeInfo;
  firmwareVersion: bigint;
}

/** Part 2 §10.12.9 TPMS_NV_CERTIFY_INFO. */
export interface TpmsNvCertifyInfo {
  indexName: Uint8Array;
  offset: number;
  nvContents: Uint8Array;
}

/** Part 2 §10.12.5 TPMS_SESSION_AUDIT_INFO. */
export interface TpmsSessionAuditInfo {
  exclusiveSession: boolean;
  sessionDigest: Uint8Array;
}

/** Part 2 §10.12.6 TPMS_COMMAND_AUDIT_INFO. */
export interface TpmsCommandAuditInfo {
  auditCounter: bigint;
  digestAlg: number;
  auditDigest: Uint8Array;
  commandDigest: Uint8Array;
}

/** Part 2 §10.12.10 TPMS_NV_DIGEST_CERTIFY_INFO. */
export interface TpmsNvDigestCertifyInfo {
  indexName: Uint8Array;
  nvDigest: Uint8Array;
}

export type TpmuAttest =
  | { type: ST['ATTEST_QUOTE']; attested: TpmsQuoteInfo }
  | { type: ST['ATTEST_CERTIFY']; attested: TpmsCertifyInfo }
  | { type: ST['ATTEST_CREATION']; attested: TpmsCreationInfo }
  | { type: ST['ATTEST_TIME']; attested: TpmsTimeAttestInfo }
  | { type: ST['ATTEST_NV']; attested: TpmsNvCertifyInfo }
  | { type: ST['ATTEST_SESSION_AUDIT']; attested: TpmsSessionAuditInfo }
  | { type: ST['ATTEST_COMMAND_AUDIT']; attested: TpmsCommandAuditInfo }
  | { type: ST['ATTEST_NV_DIGEST']; attested: TpmsNvDigestCertifyInfo };

export type TpmsAttest = {
  /** Always TPM_GENERATED_VALUE (checked when parsing). */
  magic: number;
  /** Name of the signing key, qualified by its hierarchy. */
  qualifiedSigner: Uint8Array;
  /** The caller's qualifyingData: the verifier's nonce. */
  extraData: Uint8Array;
  clockInfo: TpmsClockInfo;
  /** Vendor-specific; part of what a verifier may pin. */
  firmwareVersion: bigint;
} & TpmuAttest;

export type TpmsAttestOf<T extends TpmuAttest['type']> = TpmsAttest & { type: T };

function readAttested(r: TpmReader, type: number): TpmuAttest {
  switch (type) {
    case TPM_ST.ATTEST_QUOTE:
      return { type, attested: { pcrSelect: tpmlPcrSelection.read(r), pcrDigest: tpm2bDigest.read(r) } };
    case TPM_ST.ATTEST_CERTIFY:
      return { type, attested: { name: tpm2bName.read(r), qualifiedName: tpm2bName.read(r) } };
    case TPM_ST.ATTEST_CREATION:
      return { type, attested: { objectName: tpm2bName.read(r), creationHash: tpm2bDigest.read(r) } };
    case TPM_ST.ATTEST_TIME:
      return { type, attested: { time: tpmsTimeInfo.read(r), firmwareVersion: r.u64('firmwareVersion') } };
    case TPM_ST.ATTEST_NV:
      return {
        type,
        attested: { indexName: tpm2bName.read(r), offset: r.u16('offset'), nvContents: tpm2bMaxNvBuffer.read(r) },
      };
    case TPM_ST.ATTEST_SESSION_AUDIT: {
      const ex = r.u8('exclusiveSession');
      if (ex > 1) r.fail(`exclusiveSession is ${ex}`);
      return { type, attested: { exclusiveSession: ex === 1, sessionDigest: tpm2bDigest.read(r) } };
    }
    case TPM_ST.ATTEST_COMMAND_AUDIT:
      return {
        type,
        attested: {
          auditCounter: r.u64('auditCounter'),
          digestAlg: r.u16('digestAlg'),
          auditDigest: tpm2bDigest.read(r),
          commandDigest: tpm2bDigest.read(r),
        },
      };
    case TPM_ST.ATTEST_NV_DIGEST:
      return { type, attested: { indexName: tpm2bName.read(r), nvDigest: tpm2bDigest.read(r) } };
    default:
      return r.fail(`unknown attestation type 0x${type.toString(16)}`);
  }
}

export const tpmsAttest: Codec<TpmsAttest> = codec(
  'TPMS_ATTEST',
  (r) => {
    const magic = r.u32('magic');
    if (magic !== TPM_GENERATED_VALUE) r.fail(`magic is 0x${magic.toString(16)}, not TPM_GENERATED_VALUE`);
    const type = r.u16('type');
    const qualifiedSigner = tpm2bName.read(r);
    const extraData = tpm2bData.read(r);
    const clockInfo = tpmsClockInfo.read(r);
    const firmwareVersion = r.u64('firmwareVersion');
    return { magic, qualifiedSigner, extraData, clockInfo, firmwareVersion, ...readAttested(r, type) };
  },
  (w, v) => {
    w.u32(v.magic).u16(v.type);
    tpm2bName.write(w, v.qualifiedSigner);
    tpm2bData.write(w, v.extraData);
    tpmsClockInfo.write(w, v.clockInfo);
    w.u64(v.firmwareVersion);
    switch (v.type) {
      case TPM_ST.ATTEST_QUOTE:
        tpmlPcrSelection.write(w, v.attested.pcrSelect);
        tpm2bDigest.write(w, v.attested.pcrDigest);
        return;
      case TPM_ST.ATTEST_CERTIFY:
        tpm2bName.write(w, v.attested.name);
        tpm2bName.write(w, v.attested.qualifiedName);
        return;
      case TPM_ST.ATTEST_CREATION:
        tpm2bName.write(w, v.attested.objectName);
        tpm2bDigest.write(w, v.attested.creationHash);
        return;
      case TPM_ST.ATTEST_TIME:
        tpmsTimeInfo.write(w, v.attested.time);
        w.u64(v.attested.firmwareVersion);
        return;
      case TPM_ST.ATTEST_NV:
        tpm2bName.write(w, v.attested.indexName);
        w.u16(v.attested.offset);
        tpm2bMaxNvBuffer.write(w, v.attested.nvContents);
        return;
      case TPM_ST.ATTEST_SESSION_AUDIT:
        w.u8(v.attested.exclusiveSession ? 1 : 0);
        tpm2bDigest.write(w, v.attested.sessionDigest);
        return;
      case TPM_ST.ATTEST_COMMAND_AUDIT:
        w.u64(v.attested.auditCounter).u16(v.attested.digestAlg);
        tpm2bDigest.write(w, v.attested.auditDigest);
        tpm2bDigest.write(w, v.attested.commandDigest);
        return;
      case TPM_ST.ATTEST_NV_DIGEST:
        tpm2bName.write(w, v.attested.indexName);
        tpm2bDigest.write(w, v.attested.nvDigest);
        return;
    }
  },
);

/** Part 2 §10.12.13 TPM2B_ATTEST: `bytes` are what the signature covers. */
export const tpm2bAttest = sized('TPM2B_ATTEST', tpmsAttest);
export type Tpm2bAttest = Sized<TpmsAttest>;
