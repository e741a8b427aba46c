/** Object commands (Part 3 §12) and CreatePrimary (Part 3 §24.1). */
import { AUTH, PLAIN, command } from '../command.js';
import { TPM_CC } from '../constants.js';
import {
  tpm2bData,
  tpm2bDigest,
  tpm2bEncryptedSecret,
  tpm2bIdObject,
  tpm2bName,
  tpm2bPrivate,
} from '../structures/basic.js';
import { optionalSized, u32 } from '../structures/codec.js';
import { tpm2bCreationData } from '../structures/creation.js';
import { tpmlPcrSelection } from '../structures/pcr.js';
import { tpm2bPublic } from '../structures/public.js';
import { tpm2bSensitiveCreate, tpmtSensitive } from '../structures/sensitive.js';
import { tpmtTkCreation } from '../structures/tickets.js';

const creationParams = {
  inSensitive: tpm2bSensitiveCreate,
  inPublic: tpm2bPublic,
  outsideInfo: tpm2bData,
  creationPCR: tpmlPcrSelection,
} as const;

/** Part 3 §24.1 TPM2_CreatePrimary: a primary object from a hierarchy's seed and a template. */
export const CreatePrimary = command(TPM_CC.CreatePrimary, {
  handles: { primaryHandle: AUTH },
  params: creationParams,
  responseHandles: ['objectHandle'],
  response: {
    outPublic: tpm2bPublic,
    creationData: tpm2bCreationData,
    creationHash: tpm2bDigest,
    creationTicket: tpmtTkCreation,
    name: tpm2bName,
  },
});

/** Part 3 §12.1 TPM2_Create: an ordinary object under a loaded storage parent. */
export const Create = command(TPM_CC.Create, {
  handles: { parentHandle: AUTH },
  params: creationParams,
  response: {
    outPrivate: tpm2bPrivate,
    outPublic: tpm2bPublic,
    creationData: tpm2bCreationData,
    creationHash: tpm2bDigest,
    creationTicket: tpmtTkCreation,
  },
});

/** Part 3 §12.2 TPM2_Load. */
export const Load = command(TPM_CC.Load, {
  handles: { parentHandle: AUTH },
  params: { inPrivate: tpm2bPrivate, inPublic: tpm2bPublic },
  responseHandles: ['objectHandle'],
  response: { name: tpm2bName },
});

/** Part 3 §12.3 TPM2_LoadExternal: `inPrivate` null loads a public key only. */
export const LoadExternal = command(TPM_CC.LoadExternal, {
  params: { inPrivate: optionalSized('TPM2B_SENSITIVE', tpmtSensitive), inPublic: tpm2bPublic, hierarchy: u32 },
  responseHandles: ['objectHandle'],
  response: { name: tpm2bName },
});

/** Part 3 §12.4 TPM2_ReadPublic. */
export const ReadPublic = command(TPM_CC.ReadPublic, {
  handles: { objectHandle: PLAIN },
  response: { outPublic: tpm2bPublic, name: tpm2bName, qualifiedName: tpm2bName },
});

/**
 * Part 3 §12.5 TPM2_ActivateCredential: `keyHandle` (the EK) decrypts the seed; the credential
 * is released only if `activateHandle`'s Name is the one MakeCredential bound it to.
 */
export const ActivateCredential = command(TPM_CC.ActivateCredential, {
  handles: { activateHandle: AUTH, keyHandle: AUTH },
  params: { credentialBlob: tpm2bIdObject, secret: tpm2bEncryptedSecret },
  response: { certInfo: tpm2bDigest },
});

/** Part 3 §12.6 TPM2_MakeCredential (the TPM as a verifier's calculator; no authorization). */
export const MakeCredential = command(TPM_CC.MakeCredential, {
  handles: { handle: PLAIN },
  params: { credential: tpm2bDigest, objectName: tpm2bName },
  response: { credentialBlob: tpm2bIdObject, secret: tpm2bEncryptedSecret },
});
