/** Start-up (Part 3 §9). */
import { command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { u16 } from '../structures/codec.js';

/** Part 3 §9.3 TPM2_Startup: `startupType` TPM_SU_CLEAR or TPM_SU_STATE. */
export const Startup = command(TPM_CC.Startup, { params: { startupType: u16 } });

/** Part 3 §9.4 TPM2_Shutdown. */
export const Shutdown = command(TPM_CC.Shutdown, { params: { shutdownType: u16 } });
