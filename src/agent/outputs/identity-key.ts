/**
 * The key file the `identity` output writes for each kind of identity key:
 *
 *   software   svid.key, the PKCS#8 key
 *   tpm        svid.tss2.pem, a `TSS2 PRIVATE KEY` (keystore/tss2-pem.ts): the TPM's blobs of the key,
 *              which workloads use through OpenSSL's tpm2 provider; the private key stays in the TPM
 *   pkcs11     nothing (the token's key has no file form; workloads use the PKCS#11 URI)
 */
import { tss2PemOfRef, type KeyRef } from '../../keystore/index.js';

export function identityKeyPem(ref: KeyRef): string | undefined {
  switch (ref.storage) {
    case 'software':
      return ref.pkcs8Pem;
    case 'tpm':
      // Parses the stored blobs only; no TPM command is sent.
      return tss2PemOfRef(ref);
    default:
      return undefined;
  }
}
