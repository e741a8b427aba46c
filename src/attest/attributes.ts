/**
 * What the checks on TPM objects (AK, identity key, EK) share: which name algorithms make a
 * Name worth certifying, and how a missing attribute is named in a refusal.
 */
import { TPM_ALG, TPMA_OBJECT } from '../tpm/constants.js';
import type { TpmtPublic } from '../tpm/structures/public.js';

/**
 * Name algorithms whose Names bind an object: a TPM2_Certify or credential over a SHA-1 Name
 * proves nothing once a second preimage exists (Part 1 §16, Names).
 */
export const STRONG_HASHES: ReadonlySet<number> = new Set([TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512]);

const ATTR_NAMES: ReadonlyArray<[number, string]> = [
  [TPMA_OBJECT.fixedTPM, 'fixedTPM'],
  [TPMA_OBJECT.fixedParent, 'fixedParent'],
  [TPMA_OBJECT.sensitiveDataOrigin, 'sensitiveDataOrigin'],
  [TPMA_OBJECT.restricted, 'restricted'],
  [TPMA_OBJECT.sign, 'sign'],
];

/** The names of the `required` TPMA_OBJECT bits (Part 2 §8.3) that `pub` lacks. */
export function missingAttributes(pub: TpmtPublic, required: number): string[] {
  return ATTR_NAMES.filter(([bit]) => (required & bit) !== 0 && (pub.objectAttributes & bit) === 0).map(([, n]) => n);
}

export const attributesHex = (p: TpmtPublic): string => `0x${p.objectAttributes.toString(16).padStart(8, '0')}`;
