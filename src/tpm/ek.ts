/**
 * The endorsement key (TCG EK Credential Profile 2.5): where its certificate lives, how to get
 * its public area, and how to authorize it. Storage EKs have no usable authValue; their
 * templates carry a policy instead — PolicyA = PolicySecret(TPM_RH_ENDORSEMENT) for the
 * low-range templates, PolicyB = PolicyOR(PolicyA, PolicyC) for the high range, some of which
 * also set userWithAuth (then a password session with the empty authValue works).
 */
import { SigilError } from '../errors.js';
import { PolicyOR, PolicySecret } from './commands/session.js';
import { EK_NV_INDEX, EK_PERSISTENT_HANDLE, TPMA_OBJECT, TPM_ALG, TPM_RH } from './constants.js';
import { EK_POLICY_C, ekPolicyA, ekPolicyB } from './crypto/policy.js';
import { TPM_RC, isTpmRc } from './errors.js';
import type { Session } from './session.js';
import type { TpmtPublic } from './structures/public.js';
import { ekTemplateEccP256, ekTemplateEccP384, ekTemplateRsa2048 } from './templates.js';
// The facade interface, not the Tpm class: tpm.ts delegates its EK methods here (one direction).
import type { TpmFacade, TpmKey } from './facade.js';

export type EkKind = 'rsa-2048' | 'ecc-p256' | 'ecc-p384';

export interface EkCertificate {
  kind: EkKind;
  nvIndex: number;
  /** The certificate DER, without the zero padding some NV indices carry. */
  der: Uint8Array;
}

const EK: Record<EkKind, { certIndex: number; persistent: number; template: () => TpmtPublic }> = {
  'rsa-2048': {
    certIndex: EK_NV_INDEX.RSA2048_CERT,
    persistent: EK_PERSISTENT_HANDLE.RSA2048,
    template: ekTemplateRsa2048,
  },
  'ecc-p256': {
    certIndex: EK_NV_INDEX.ECC_P256_CERT,
    persistent: EK_PERSISTENT_HANDLE.ECC_P256,
    template: ekTemplateEccP256,
  },
  'ecc-p384': {
    certIndex: EK_NV_INDEX.ECC_P384_H_CERT,
    persistent: EK_PERSISTENT_HANDLE.ECC_P384_H,
    template: ekTemplateEccP384,
  },
};

export const EK_KINDS: readonly EkKind[] = ['rsa-2048', 'ecc-p256', 'ecc-p384'];

const EMPTY = new Uint8Array(0);

/** Length of the DER TLV at the start of `b` (certificates are one SEQUENCE), or b.length. */
function derExtent(b: Uint8Array): number {
  if (b.length < 2 || b[0] !== 0x30) return b.length;
  const l = b[1]!;
  if (l < 0x80) return Math.min(b.length, 2 + l);
  const n = l & 0x7f;
  if (n === 0 || n > 3 || b.length < 2 + n) return b.length;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
  return Math.min(b.length, 2 + n + len);
}

/** The EK certificate of `kind`, or the first one present (RSA, then ECC P-256, then P-384). */
export async function readEkCertificate(tpm: TpmFacade, kind?: EkKind): Promise<EkCertificate | undefined> {
  for (const k of kind ? [kind] : EK_KINDS) {
    const index = EK[k].certIndex;
    let data: Uint8Array;
    try {
      data = await tpm.nvRead(index);
    } catch (err) {
      if (isTpmRc(err, TPM_RC.HANDLE)) continue;
      throw err;
    }
    return { kind: k, nvIndex: index, der: data.subarray(0, derExtent(data)) };
  }
  return undefined;
}

/** Whether a persistent key is an EK of this kind (algorithm and size; the rest is the vendor's). */
function sameKind(actual: TpmtPublic, template: TpmtPublic): boolean {
  if (actual.type === TPM_ALG.RSA && template.type === TPM_ALG.RSA)
    return actual.parameters.keyBits === template.parameters.keyBits;
  if (actual.type === TPM_ALG.ECC && template.type === TPM_ALG.ECC)
    return actual.parameters.curveId === template.parameters.curveId;
  return false;
}

/**
 * The EK public area: the persistent EK at the profile's handle when it is of this kind (that
 * is the key the manufacturer certified, whatever template it used), else a transient one
 * created from the profile template (the same key the certificate names when the manufacturer
 * used that template). Pass the result to Tpm.withTransient so the transient case is flushed.
 */
export async function readEkPublic(tpm: TpmFacade, kind: EkKind, endorsementAuth: Uint8Array): Promise<TpmKey> {
  const spec = EK[kind];
  try {
    const key = await tpm.readPublic(spec.persistent);
    if (sameKind(key.public.value, spec.template())) return key;
  } catch (err) {
    if (!isTpmRc(err, TPM_RC.HANDLE)) throw err;
  }
  return tpm.createPrimary(TPM_RH.ENDORSEMENT, spec.template(), { hierarchyAuth: endorsementAuth });
}

/** How to authorize the EK for USER-role commands (ActivateCredential, salted sessions). */
export type EkAuthorization = { auth?: Session; authValue?: Uint8Array };

/**
 * Run `fn` with an authorization for the EK. Policy sessions are started here and flushed
 * afterwards whatever happens.
 */
export async function authorizeEk<T>(
  tpm: TpmFacade,
  ek: TpmKey,
  endorsementAuth: Uint8Array,
  fn: (auth: EkAuthorization) => Promise<T>,
): Promise<T> {
  const pub = ek.public.value;
  if (pub.objectAttributes & TPMA_OBJECT.userWithAuth) return fn({ authValue: EMPTY });
  const policy = Buffer.from(pub.authPolicy);
  const alg = pub.nameAlg;
  const isA = policy.equals(ekPolicyA(alg));
  const isB = !isA && EK_POLICY_C[alg] !== undefined && policy.equals(ekPolicyB(alg));
  if (!isA && !isB) {
    throw new SigilError(
      'unsupported_key',
      'the EK policy is neither PolicyA nor PolicyB of the EK Credential Profile',
    );
  }
  return tpm.withSession('policy', { hashAlg: alg, continueSession: false }, async (session) => {
    await tpm.run(PolicySecret, {
      authHandle: { handle: TPM_RH.ENDORSEMENT, authValue: endorsementAuth },
      policySession: session.handle,
      nonceTPM: session.nonceTPM,
      cpHashA: EMPTY,
      policyRef: EMPTY,
      expiration: 0,
    });
    if (isB) {
      await tpm.run(PolicyOR, {
        policySession: session.handle,
        pHashList: [ekPolicyA(alg), Buffer.from(EK_POLICY_C[alg]!, 'hex')],
      });
    }
    return fn({ auth: session });
  });
}
