/** Session and policy commands (Part 3 §11, §23). */
import { AUTH, PLAIN, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { tpm2bDigest, tpm2bEncryptedSecret, tpm2bNonce, tpm2bTimeout, tpmlDigest } from '../structures/basic.js';
import { i32, u16, u32, u8 } from '../structures/codec.js';
import { tpmlPcrSelection } from '../structures/pcr.js';
import { tpmtSymDef } from '../structures/schemes.js';
import { tpmtTkAuth } from '../structures/tickets.js';

/** Part 3 §11.1 TPM2_StartAuthSession. */
export const StartAuthSession = command(TPM_CC.StartAuthSession, {
  handles: { tpmKey: PLAIN, bind: PLAIN },
  params: {
    nonceCaller: tpm2bNonce,
    encryptedSalt: tpm2bEncryptedSecret,
    sessionType: u8,
    symmetric: tpmtSymDef,
    authHash: u16,
  },
  responseHandles: ['sessionHandle'],
  response: { nonceTPM: tpm2bNonce },
});

/** Part 3 §11.2 TPM2_PolicyRestart. */
export const PolicyRestart = command(TPM_CC.PolicyRestart, { handles: { sessionHandle: PLAIN } });

/**
 * Part 3 §23.4 TPM2_PolicySecret: proves knowledge of `authHandle`'s authValue (authorized by a
 * session on that handle) and extends the policy with its Name. The EK's policy is
 * PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile §B.6).
 */
export const PolicySecret = command(TPM_CC.PolicySecret, {
  handles: { authHandle: AUTH, policySession: PLAIN },
  params: { nonceTPM: tpm2bNonce, cpHashA: tpm2bDigest, policyRef: tpm2bNonce, expiration: i32 },
  response: { timeout: tpm2bTimeout, policyTicket: tpmtTkAuth },
});

/** Part 3 §23.6 TPM2_PolicyOR. */
export const PolicyOR = command(TPM_CC.PolicyOR, {
  handles: { policySession: PLAIN },
  params: { pHashList: tpmlDigest },
});

/** Part 3 §23.7 TPM2_PolicyPCR. */
export const PolicyPCR = command(TPM_CC.PolicyPCR, {
  handles: { policySession: PLAIN },
  params: { pcrDigest: tpm2bDigest, pcrs: tpmlPcrSelection },
});

/** Part 3 §23.11 TPM2_PolicyCommandCode. */
export const PolicyCommandCode = command(TPM_CC.PolicyCommandCode, {
  handles: { policySession: PLAIN },
  params: { code: u32 },
});

/** Part 3 §23.14 TPM2_PolicyNameHash. */
export const PolicyNameHash = command(TPM_CC.PolicyNameHash, {
  handles: { policySession: PLAIN },
  params: { nameHash: tpm2bDigest },
});

/** Part 3 §23.17 TPM2_PolicyAuthValue. */
export const PolicyAuthValue = command(TPM_CC.PolicyAuthValue, { handles: { policySession: PLAIN } });

/** Part 3 §23.18 TPM2_PolicyPassword. */
export const PolicyPassword = command(TPM_CC.PolicyPassword, { handles: { policySession: PLAIN } });

/** Part 3 §23.19 TPM2_PolicyGetDigest. */
export const PolicyGetDigest = command(TPM_CC.PolicyGetDigest, {
  handles: { policySession: PLAIN },
  response: { policyDigest: tpm2bDigest },
});
