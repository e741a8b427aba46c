/**
 * The EK–AK binding (credential activation, TPM 2.0 Part 1 §24), shared by the `tpm` join and
 * by x509 rules with `require_tpm` (a DevID in the TPM, join/x509/tpm-*.ts):
 *
 *   agent   reads its EK (certificate from NV when there is one, public area) and creates a
 *           restricted AK under the SRK
 *   issuer  MakeCredential, in software, of a fresh secret to that EK for the AK's Name
 *   agent   ActivateCredential with the AK loaded and the EK authorized: only the TPM holding
 *           that EK, with that very AK loaded, recovers the secret
 *   issuer  compares, in constant time — so the AK, and whatever the AK certifies or quotes,
 *           is in the TPM the EK names
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { makeCredential } from '../../tpm/crypto/credential.js';
import type { EkCertificate, EkKind } from '../../tpm/ek.js';
import { objectName } from '../../tpm/name.js';
import type { Tpm2bPublic } from '../../tpm/structures/public.js';
import type { Tpm, TpmKey } from '../../tpm/tpm.js';
import { CREDENTIAL_BYTES } from './wire.js';

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
    throw new SigilError('credential_mismatch', 'the credential activation answer is not the secret the issuer wrapped to the EK for this AK: the AK is not loaded in the TPM that holds the EK');
  }
}

export interface AgentEk {
  cert: EkCertificate | undefined;
  kind: EkKind;
  public: Tpm2bPublic;
}

/** Agent: the EK to present — `auto` takes the first EK certificate found (RSA, ECC P-256, P-384), else the RSA EK. */
export async function readAgentEk(tpm: Tpm, want: EkKind | 'auto', auth: { endorsementAuth?: Uint8Array } = {}): Promise<AgentEk> {
  const cert = want === 'auto' ? await tpm.readEkCertificate() : await tpm.readEkCertificate(want);
  const kind: EkKind = cert?.kind ?? (want === 'auto' ? 'rsa-2048' : want);
  const pub = await tpm.withTransient(tpm.readEkPublic(kind, auth), (ek) => Promise.resolve(ek.public));
  return { cert, kind, public: pub };
}

/** Agent: ActivateCredential with the loaded AK and the EK of `kind`. */
export function activateCredential(tpm: Tpm, ak: TpmKey, kind: EkKind, credential: { blob: string; secret: string }, auth: { endorsementAuth?: Uint8Array } = {}): Promise<Uint8Array> {
  return tpm.withTransient(tpm.readEkPublic(kind, auth), (ek) => tpm.activateCredential(ak, ek, Buffer.from(credential.blob, 'base64'), Buffer.from(credential.secret, 'base64'), auth));
}
