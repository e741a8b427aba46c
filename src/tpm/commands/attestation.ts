/** Attestation (Part 3 §18), signing (Part 3 §20) and hashing (Part 3 §15.4). */
import { AUTH, PLAIN, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import { tpm2bAttest } from '../structures/attest.js';
import { tpm2bData, tpm2bDigest, tpm2bMaxBuffer } from '../structures/basic.js';
import { u16, u32 } from '../structures/codec.js';
import { tpmlPcrSelection } from '../structures/pcr.js';
import { tpmtSigScheme } from '../structures/schemes.js';
import { tpmtSignature } from '../structures/signature.js';
import { tpmtTkCreation, tpmtTkHashcheck, tpmtTkVerified } from '../structures/tickets.js';

/** Part 3 §18.2 TPM2_Certify: `signHandle` attests that `objectHandle` is loaded in this TPM. */
export const Certify = command(TPM_CC.Certify, {
  handles: { objectHandle: AUTH, signHandle: AUTH },
  params: { qualifyingData: tpm2bData, inScheme: tpmtSigScheme },
  response: { certifyInfo: tpm2bAttest, signature: tpmtSignature },
});

/** Part 3 §18.3 TPM2_CertifyCreation: attests the creation data of an object this TPM made. */
export const CertifyCreation = command(TPM_CC.CertifyCreation, {
  handles: { signHandle: AUTH, objectHandle: PLAIN },
  params: {
    qualifyingData: tpm2bData,
    creationHash: tpm2bDigest,
    inScheme: tpmtSigScheme,
    creationTicket: tpmtTkCreation,
  },
  response: { certifyInfo: tpm2bAttest, signature: tpmtSignature },
});

/** Part 3 §18.4 TPM2_Quote: signs a digest of the selected PCRs with the verifier's nonce. */
export const Quote = command(TPM_CC.Quote, {
  handles: { signHandle: AUTH },
  params: { qualifyingData: tpm2bData, inScheme: tpmtSigScheme, pcrSelect: tpmlPcrSelection },
  response: { quoted: tpm2bAttest, signature: tpmtSignature },
});

/** Part 3 §20.1 TPM2_VerifySignature. */
export const VerifySignature = command(TPM_CC.VerifySignature, {
  handles: { keyHandle: PLAIN },
  params: { digest: tpm2bDigest, signature: tpmtSignature },
  response: { validation: tpmtTkVerified },
});

/** Part 3 §20.2 TPM2_Sign: a restricted key needs a hashcheck ticket from Hash. */
export const Sign = command(TPM_CC.Sign, {
  handles: { keyHandle: AUTH },
  params: { digest: tpm2bDigest, inScheme: tpmtSigScheme, validation: tpmtTkHashcheck },
  response: { signature: tpmtSignature },
});

/** Part 3 §15.4 TPM2_Hash: the ticket proves the data did not start with TPM_GENERATED_VALUE. */
export const Hash = command(TPM_CC.Hash, {
  params: { data: tpm2bMaxBuffer, hashAlg: u16, hierarchy: u32 },
  response: { outHash: tpm2bDigest, validation: tpmtTkHashcheck },
});
