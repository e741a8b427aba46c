/**
 * TPM2_Certify (Part 3 §18.2): the AK vouches that an object with a given Name is loaded in its
 * TPM. Together with the key's attributes (./key.ts) this proves the key was generated in, and
 * cannot leave, the TPM that holds the AK.
 *
 *   certify_invalid       not TPM_ST_ATTEST_CERTIFY, not the expected qualifying data (stale,
 *                         or made for another request), or not signed by the AK
 *   certify_key_mismatch  the certified Name is not the Name of the key presented
 */
import type { KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { TPM_ST } from '../tpm/constants.js';
import { objectName } from '../tpm/name.js';
import type { TpmsAttest } from '../tpm/structures/attest.js';
import type { Tpm2bPublic } from '../tpm/structures/public.js';
import { signedByAk } from './ak.js';
import type { SignedAttest } from './structures.js';

/**
 * Verify a TPM2_Certify of `key` by the AK with `qualifyingData`. `what` names it in messages
 * ("certification", "renewal key attestation"); `akKey`: the AK's public key when the caller
 * holds it already (checkAk, AkKeys).
 */
export function verifyCertify(
  c: SignedAttest,
  ak: Tpm2bPublic,
  key: Tpm2bPublic,
  qualifyingData: Buffer,
  what = 'certification',
  akKey?: KeyObject,
): TpmsAttest {
  const a = c.attest.value;
  const fail = (code: ErrorCode, why: string): never => {
    throw new SigilError(code, `the ${what} of the identity key ${why}`);
  };
  if (a.type !== TPM_ST.ATTEST_CERTIFY)
    fail('certify_invalid', `is an attestation of type 0x${a.type.toString(16)}, not TPM_ST_ATTEST_CERTIFY`);
  if (!qualifyingData.equals(Buffer.from(a.extraData)))
    fail('certify_invalid', 'does not carry the expected qualifying data (stale or made for another request)');
  if (!signedByAk(ak.value, c, akKey)) fail('certify_invalid', 'is not signed by the attestation key');
  if (a.type === TPM_ST.ATTEST_CERTIFY && !Buffer.from(a.attested.name).equals(Buffer.from(objectName(key)))) {
    fail('certify_key_mismatch', 'names another TPM object than key_public');
  }
  return a;
}
