/** PCR commands (Part 3 §22). */
import { AUTH, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { tpmlDigest, tpmlDigestValues } from '../structures/basic.js';
import { u32 } from '../structures/codec.js';
import { tpmlPcrSelection } from '../structures/pcr.js';

/** Part 3 §22.2 TPM2_PCR_Extend: one digest per bank. */
export const PCR_Extend = command(TPM_CC.PCR_Extend, {
  handles: { pcrHandle: AUTH },
  params: { digests: tpmlDigestValues },
});

/**
 * Part 3 §22.4 TPM2_PCR_Read: returns at most 8 digests; `pcrSelectionOut` says which were
 * read, so callers loop for larger selections.
 */
export const PCR_Read = command(TPM_CC.PCR_Read, {
  params: { pcrSelectionIn: tpmlPcrSelection },
  response: { pcrUpdateCounter: u32, pcrSelectionOut: tpmlPcrSelection, pcrValues: tpmlDigest },
});
