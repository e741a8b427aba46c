/**
 * What the `identity` output writes as `svid.key` for each kind of identity key:
 *
 *   software   the PKCS#8 key
 *   tpm        a `TSS2 PRIVATE KEY` file (keystore/tss2-pem.ts): the TPM's blobs of the same key,
 *              which workloads use through OpenSSL's tpm2 provider; the private key stays in the TPM
 *   pkcs11     nothing (the token's key has no file form; workloads use the PKCS#11 URI)
 */
import { TpmSigner, type KeyRef } from '../../keystore/index.js';

export function identityKeyPem(ref: KeyRef): string | undefined {
  switch (ref.storage) {
    case 'software':
      return ref.pkcs8Pem;
    case 'tpm':
      // Parses the stored blobs only; no TPM command is sent.
      return TpmSigner.fromRef(ref).toTss2Pem();
    default:
      return undefined;
  }
}
