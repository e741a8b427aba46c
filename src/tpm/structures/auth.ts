/**
 * The authorization area (Part 1 §18.7, Part 2 §10.13.2/§10.13.3): one entry per session in a
 * command, and the TPM's matching entry in the response.
 */
import { tpm2bAuth, tpm2bNonce } from './basic.js';
import { codec } from './codec.js';
import type { Codec } from './codec.js';

/** Part 2 §10.13.2 TPMS_AUTH_COMMAND. */
export interface TpmsAuthCommand {
  sessionHandle: number;
  nonce: Uint8Array;
  /** TPMA_SESSION bits. */
  sessionAttributes: number;
  /** HMAC, or the password for TPM_RS_PW and PolicyPassword. */
  hmac: Uint8Array;
}

/** Part 2 §10.13.3 TPMS_AUTH_RESPONSE. */
export interface TpmsAuthResponse {
  nonce: Uint8Array;
  sessionAttributes: number;
  hmac: Uint8Array;
}

export const tpmsAuthCommand: Codec<TpmsAuthCommand> = codec(
  'TPMS_AUTH_COMMAND',
  (r) => ({
    sessionHandle: r.u32('sessionHandle'),
    nonce: tpm2bNonce.read(r),
    sessionAttributes: r.u8('sessionAttributes'),
    hmac: tpm2bAuth.read(r),
  }),
  (w, v) => {
    w.u32(v.sessionHandle);
    tpm2bNonce.write(w, v.nonce);
    w.u8(v.sessionAttributes);
    tpm2bAuth.write(w, v.hmac);
  },
);

export const tpmsAuthResponse: Codec<TpmsAuthResponse> = codec(
  'TPMS_AUTH_RESPONSE',
  (r) => ({ nonce: tpm2bNonce.read(r), sessionAttributes: r.u8('sessionAttributes'), hmac: tpm2bAuth.read(r) }),
  (w, v) => {
    tpm2bNonce.write(w, v.nonce);
    w.u8(v.sessionAttributes);
    tpm2bAuth.write(w, v.hmac);
  },
);
