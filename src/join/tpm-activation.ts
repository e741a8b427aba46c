/**
 * The agent's half of the EK–AK binding (credential activation, TPM 2.0 Part 1 §24; the
 * issuer's half is attest/credential.ts), shared by the `tpm` join and by x509 rules with
 * `require_tpm` (a DevID in the TPM, join/x509/tpm-*.ts), hence here and not in either folder:
 *
 *   agent   reads its EK (certificate from NV when there is one, public area) and creates a
 *           restricted AK under the SRK
 *   issuer  MakeCredential, in software, of a fresh secret to that EK for the AK's Name
 *   agent   ActivateCredential with the AK loaded and the EK authorized: only the TPM holding
 *           that EK, with that very AK loaded, recovers the secret
 *   issuer  compares, in constant time — so the AK, and whatever the AK certifies or quotes,
 *           is in the TPM the EK names
 */
import { TPMA_OBJECT } from '../tpm/constants.js';
import type { EkCertificate, EkKind } from '../tpm/ek.js';
import type { EccPublic, Tpm2bPublic } from '../tpm/structures/public.js';
import { akTemplateEccP256 } from '../tpm/templates.js';
import type { Tpm, TpmKey } from '../tpm/tpm.js';

/**
 * The attestation key template: templates.ts akTemplateEccP256 (restricted ECDSA P-256,
 * SHA-256) plus noDA — it has no authValue to guess, and without noDA every unorderly power
 * loss after using it counts as a failed authorization (keystore/tpm.ts explains).
 */
export function akTemplate(): EccPublic {
  const t = akTemplateEccP256();
  return { ...t, objectAttributes: t.objectAttributes | TPMA_OBJECT.noDA };
}

export interface AgentEk {
  cert: EkCertificate | undefined;
  kind: EkKind;
  public: Tpm2bPublic;
}

/** Agent: the EK to present — `auto` takes the first EK certificate found (RSA, ECC P-256, P-384), else the RSA EK. */
export async function readAgentEk(
  tpm: Tpm,
  want: EkKind | 'auto',
  auth: { endorsementAuth?: Uint8Array } = {},
): Promise<AgentEk> {
  const cert = want === 'auto' ? await tpm.readEkCertificate() : await tpm.readEkCertificate(want);
  const kind: EkKind = cert?.kind ?? (want === 'auto' ? 'rsa-2048' : want);
  const pub = await tpm.withTransient(tpm.readEkPublic(kind, auth), (ek) => Promise.resolve(ek.public));
  return { cert, kind, public: pub };
}

/** Agent: ActivateCredential with the loaded AK and the EK of `kind`. */
export function activateCredential(
  tpm: Tpm,
  ak: TpmKey,
  kind: EkKind,
  credential: { blob: string; secret: string },
  auth: { endorsementAuth?: Uint8Array } = {},
): Promise<Uint8Array> {
  return tpm.withTransient(tpm.readEkPublic(kind, auth), (ek) =>
    tpm.activateCredential(
      ak,
      ek,
      Buffer.from(credential.blob, 'base64'),
      Buffer.from(credential.secret, 'base64'),
      auth,
    ),
  );
}
