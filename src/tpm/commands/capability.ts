/** Capability and random number commands (Part 3 §30, §16). */
import { command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { tpm2bDigest } from '../structures/basic.js';
import { tpmsCapabilityData } from '../structures/capability.js';
import { u16, u32, yesNo } from '../structures/codec.js';

/** Part 3 §30.2 TPM2_GetCapability. */
export const GetCapability = command(TPM_CC.GetCapability, {
  params: { capability: u32, property: u32, propertyCount: u32 },
  response: { moreData: yesNo, capabilityData: tpmsCapabilityData },
});

/** Part 3 §16.1 TPM2_GetRandom: at most a digest's worth per call. */
export const GetRandom = command(TPM_CC.GetRandom, {
  params: { bytesRequested: u16 },
  response: { randomBytes: tpm2bDigest },
});
