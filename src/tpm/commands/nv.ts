/** Non-volatile storage (Part 3 §31). */
import { AUTH, PLAIN, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { tpm2bAuth, tpm2bMaxNvBuffer, tpm2bName } from '../structures/basic.js';
import { u16 } from '../structures/codec.js';
import { tpm2bNvPublic } from '../structures/nv.js';

/** Part 3 §31.3 TPM2_NV_DefineSpace (owner or platform authorization). */
export const NV_DefineSpace = command(TPM_CC.NV_DefineSpace, {
  handles: { authHandle: AUTH },
  params: { auth: tpm2bAuth, publicInfo: tpm2bNvPublic },
});

/** Part 3 §31.4 TPM2_NV_UndefineSpace. */
export const NV_UndefineSpace = command(TPM_CC.NV_UndefineSpace, {
  handles: { authHandle: AUTH, nvIndex: PLAIN },
});

/** Part 3 §31.6 TPM2_NV_ReadPublic. */
export const NV_ReadPublic = command(TPM_CC.NV_ReadPublic, {
  handles: { nvIndex: PLAIN },
  response: { nvPublic: tpm2bNvPublic, nvName: tpm2bName },
});

/** Part 3 §31.7 TPM2_NV_Write: at most TPM_PT_NV_BUFFER_MAX bytes per call. */
export const NV_Write = command(TPM_CC.NV_Write, {
  handles: { authHandle: AUTH, nvIndex: PLAIN },
  params: { data: tpm2bMaxNvBuffer, offset: u16 },
});

/** Part 3 §31.13 TPM2_NV_Read: at most TPM_PT_NV_BUFFER_MAX bytes per call. */
export const NV_Read = command(TPM_CC.NV_Read, {
  handles: { authHandle: AUTH, nvIndex: PLAIN },
  params: { size: u16, offset: u16 },
  response: { data: tpm2bMaxNvBuffer },
});
