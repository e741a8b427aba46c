/**
 * Tickets (Part 2 §10.7): HMACs by the TPM proving it produced or checked something.
 * All share one layout: tag, hierarchy, digest.
 */
import { TPM_RH, TPM_ST } from '../constants.js';
import { tpm2bDigest } from './basic.js';
import { codec } from './codec.js';
import type { Codec } from './codec.js';

export interface TpmtTicket {
  tag: number;
  hierarchy: number;
  digest: Uint8Array;
}

function ticket(name: string, tag: number): Codec<TpmtTicket> {
  return codec(
    name,
    (r) => {
      const t = r.u16(`${name}.tag`);
      if (t !== tag) r.fail(`${name} has tag 0x${t.toString(16)}, expected 0x${tag.toString(16)}`);
      return { tag: t, hierarchy: r.u32('hierarchy'), digest: tpm2bDigest.read(r) };
    },
    (w, v) => {
      w.u16(v.tag).u32(v.hierarchy);
      tpm2bDigest.write(w, v.digest);
    },
  );
}

/** Part 2 §10.7.3 TPMT_TK_CREATION. */
export const tpmtTkCreation = ticket('TPMT_TK_CREATION', TPM_ST.CREATION);
/** Part 2 §10.7.4 TPMT_TK_VERIFIED. */
export const tpmtTkVerified = ticket('TPMT_TK_VERIFIED', TPM_ST.VERIFIED);
/** Part 2 §10.7.6 TPMT_TK_HASHCHECK. */
export const tpmtTkHashcheck = ticket('TPMT_TK_HASHCHECK', TPM_ST.HASHCHECK);

/** Part 2 §10.7.5 TPMT_TK_AUTH: tag is AUTH_SECRET or AUTH_SIGNED. */
export const tpmtTkAuth: Codec<TpmtTicket> = codec(
  'TPMT_TK_AUTH',
  (r) => {
    const tag = r.u16('TPMT_TK_AUTH.tag');
    if (tag !== TPM_ST.AUTH_SECRET && tag !== TPM_ST.AUTH_SIGNED) r.fail(`TPMT_TK_AUTH has tag 0x${tag.toString(16)}`);
    return { tag, hierarchy: r.u32('hierarchy'), digest: tpm2bDigest.read(r) };
  },
  (w, v) => {
    w.u16(v.tag).u32(v.hierarchy);
    tpm2bDigest.write(w, v.digest);
  },
);

/** The NULL hashcheck ticket Sign takes for digests the TPM did not hash (Part 3 §20.2.1). */
export const NULL_HASHCHECK: TpmtTicket = { tag: TPM_ST.HASHCHECK, hierarchy: TPM_RH.NULL, digest: new Uint8Array(0) };
