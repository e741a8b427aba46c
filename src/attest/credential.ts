/**
 * The verifier's half of credential activation (TPM 2.0 Part 1 §24; Part 3 §12.5-12.6): the
 * proof that an AK is in the TPM that holds a given EK.
 *
 *   issuer  MakeCredential, in software, of a fresh secret to the EK for the AK's Name
 *   agent   ActivateCredential with the AK loaded and the EK authorized: only the TPM holding
 *           that EK, with that very AK loaded, recovers the secret
 *   issuer  compares, in constant time (`credential_mismatch`) — so the AK, and whatever the AK
 *           certifies or quotes, is in the TPM the EK names
 *
 * The agent's half is join/tpm-activation.ts.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SigilError } from '../errors.js';
import { makeCredential } from '../tpm/crypto/credential.js';
import { objectName } from '../tpm/name.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';

/** The secret MakeCredential wraps: 32 bytes (a SHA-256 EK takes at most 32). */
const CREDENTIAL_BYTES = 32;

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** What the issuer sends (challenge data) and keeps (challenge state). */
export interface CredentialChallenge {
  /** TPM2B_ID_OBJECT / TPM2B_ENCRYPTED_SECRET contents, base64: for ActivateCredential. */
  credential: { blob: string; secret: string };
  /** The wrapped secret, base64: never sent. */
  secret: string;
}

/** Issuer: wrap a fresh secret to the EK for the AK's Name. */
export function credentialChallenge(ek: Tpm2bPublic, ak: Tpm2bPublic): CredentialChallenge {
  const secret = randomBytes(CREDENTIAL_BYTES);
  const cred = makeCredential(ek.value, objectName(ak), secret);
  return { credential: { blob: b64(cred.credentialBlob), secret: b64(cred.secret) }, secret: b64(secret) };
}

/** Issuer: the agent's ActivateCredential output must be the secret (`credential_mismatch`). */
export function checkActivation(secretB64: string, activatedB64: string): void {
  const secret = Buffer.from(secretB64, 'base64');
  const activated = Buffer.from(activatedB64, 'base64');
  if (activated.length !== secret.length || !timingSafeEqual(activated, secret)) {
    throw new SigilError(
      'credential_mismatch',
      'the credential activation answer is not the secret the issuer wrapped to the EK for this AK: the AK is not loaded in the TPM that holds the EK',
    );
  }
}
