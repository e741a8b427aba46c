/**
 * Policy digests computed in software (Part 1 §19.7 "Policy Sessions", Part 3 §23): what a
 * TPM's policy session will hold after a sequence of policy commands, so templates and
 * verifiers can state an authPolicy without a trial session.
 *
 *   start:              0…0 (digest size)
 *   PolicySecret(E):    d = H(H(d ‖ CC_PolicySecret ‖ Name(E)) ‖ policyRef)       (§23.4)
 *   PolicyOR(list):     d = H(0…0 ‖ CC_PolicyOR ‖ list₁ ‖ … ‖ listₙ)             (§23.6)
 *   PolicyCommandCode:  d = H(d ‖ CC_PolicyCommandCode ‖ code)                    (§23.11)
 *   PolicyAuthValue:    d = H(d ‖ CC_PolicyAuthValue)                            (§23.17)
 */
import { TPM_ALG, TPM_CC, TPM_RH } from '../constants.js';
import { handleName } from '../name.js';
import { digestSize, hash } from './hash.js';

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

export function policyStart(hashAlg: number): Buffer {
  return Buffer.alloc(digestSize(hashAlg));
}

export function policySecret(
  hashAlg: number,
  digest: Uint8Array,
  authName: Uint8Array,
  policyRef: Uint8Array = new Uint8Array(0),
): Buffer {
  return hash(hashAlg, hash(hashAlg, digest, u32(TPM_CC.PolicySecret), authName), policyRef);
}

export function policyOr(hashAlg: number, branches: readonly Uint8Array[]): Buffer {
  return hash(hashAlg, policyStart(hashAlg), u32(TPM_CC.PolicyOR), ...branches);
}

export function policyCommandCode(hashAlg: number, digest: Uint8Array, code: number): Buffer {
  return hash(hashAlg, digest, u32(TPM_CC.PolicyCommandCode), u32(code));
}

export function policyAuthValue(hashAlg: number, digest: Uint8Array): Buffer {
  return hash(hashAlg, digest, u32(TPM_CC.PolicyAuthValue));
}

/** EK Credential Profile 2.5 "PolicyA": PolicySecret(TPM_RH_ENDORSEMENT). */
export function ekPolicyA(hashAlg: number): Buffer {
  return policySecret(hashAlg, policyStart(hashAlg), handleName(TPM_RH.ENDORSEMENT));
}

/**
 * EK Credential Profile 2.5 "PolicyC": PolicyAuthorizeNV with the profile's well-known NV
 * index for this hash (0x01c07f01/02/03). A constant of the profile, not computed here.
 */
export const EK_POLICY_C: Readonly<Record<number, string>> = {
  [TPM_ALG.SHA256]: '3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde',
  [TPM_ALG.SHA384]: 'd6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165',
  [TPM_ALG.SHA512]:
    '589ee1e146544716e8deafe6db247b01b81e9f9c7dd16b814aa159138749105fba5388dd1dea702f35240c184933121e2c61b8f50d3ef91393a49a38c3f73fc8',
};

/** EK Credential Profile 2.5 "PolicyB" of the high-range templates: PolicyOR(PolicyA, PolicyC). */
export function ekPolicyB(hashAlg: number): Buffer {
  const c = EK_POLICY_C[hashAlg];
  if (!c) throw new TypeError(`no EK PolicyC for hash 0x${hashAlg.toString(16)}`);
  return policyOr(hashAlg, [ekPolicyA(hashAlg), Buffer.from(c, 'hex')]);
}
