/**
 * MakeCredential in software (Part 1 §24.4 "Credential Protection", Part 3 §12.6): what a
 * verifier sends so that only the TPM holding the EK, with the AK named `objectName` loaded,
 * can recover `credential` through ActivateCredential.
 *
 *   seed, secret = encryptSeed(EK, "IDENTITY")
 *   symKey       = KDFa(ekNameAlg, seed, "STORAGE", objectName, "", ekSymKeyBits)
 *   encIdentity  = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
 *   hmacKey      = KDFa(ekNameAlg, seed, "INTEGRITY", "", "", digestBits)
 *   outerHMAC    = HMAC(ekNameAlg, hmacKey, encIdentity ‖ objectName)
 *   credentialBlob (TPM2B_ID_OBJECT content) = TPM2B_DIGEST(outerHMAC) ‖ encIdentity
 */
import { SigilError } from '../../errors.js';
import { TPM_ALG } from '../constants.js';
import { tpm2bDigest } from '../structures/basic.js';
import { marshal } from '../structures/codec.js';
import type { TpmtPublic } from '../structures/public.js';
import { cfbEncrypt } from './cfb.js';
import { digestSize, hmac } from './hash.js';
import { kdfa } from './kdfa.js';
import { encryptSeed } from './secret.js';

export interface Credential {
  /** TPM2B_ID_OBJECT content for ActivateCredential's credentialBlob. */
  credentialBlob: Uint8Array;
  /** TPM2B_ENCRYPTED_SECRET content for ActivateCredential's secret. */
  secret: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export function makeCredential(ek: TpmtPublic, objectName: Uint8Array, credential: Uint8Array): Credential {
  if (ek.type !== TPM_ALG.RSA && ek.type !== TPM_ALG.ECC)
    throw new SigilError('unsupported_key', 'the EK must be an RSA or ECC key');
  const sym = ek.parameters.symmetric;
  if (sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB) {
    throw new SigilError('unsupported_key', 'the EK is not a storage key with AES-CFB');
  }
  if (credential.length > digestSize(ek.nameAlg)) {
    throw new SigilError('bad_request', `a credential is at most ${digestSize(ek.nameAlg)} bytes for this EK`);
  }
  const { seed, encrypted } = encryptSeed(ek, 'IDENTITY');
  const symKey = kdfa(ek.nameAlg, seed, 'STORAGE', objectName, EMPTY, sym.keyBits);
  const encIdentity = cfbEncrypt(symKey, Buffer.alloc(16), marshal(tpm2bDigest, credential));
  const hmacKey = kdfa(ek.nameAlg, seed, 'INTEGRITY', EMPTY, EMPTY, digestSize(ek.nameAlg) * 8);
  const outerHmac = hmac(ek.nameAlg, hmacKey, encIdentity, objectName);
  return { credentialBlob: Buffer.concat([marshal(tpm2bDigest, outerHmac), encIdentity]), secret: encrypted };
}
