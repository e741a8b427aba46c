/**
 * The key pair behind an X.509 output (database, kubernetes): ECDSA P-256, fresh at every
 * rotation. `software` writes a PKCS#8 key; `tpm` makes the key inside the TPM (under the SRK,
 * keystore/tpm.ts) and writes a `TSS2 PRIVATE KEY` file (keystore/tss2-pem.ts) — the workload
 * then uses the key through OpenSSL's tpm2 provider and the private key never exists on disk.
 */
import { generateKeyPairSync } from 'node:crypto';
import { toPem } from '../../pki/pem.js';

export interface OutputKey {
  /** SubjectPublicKeyInfo, PEM "PUBLIC KEY": what the credential request carries. */
  spkiPem: string;
  /** PKCS#8 PEM, or TSS2 PRIVATE KEY PEM for a TPM key. */
  keyPem: string;
  storage: 'software' | 'tpm';
}

/** Default TPM for `key: tpm` without `tcti:` (the variable tpm2-tools read). */
export const defaultTcti = (): string => process.env.TPM2TOOLS_TCTI ?? 'device:/dev/tpmrm0';

export async function createOutputKey(storage: 'software' | 'tpm' = 'software', tcti?: string): Promise<OutputKey> {
  if (storage === 'tpm') {
    // Loaded only when used: the TPM stack is large and most outputs never need it.
    const { TpmSigner } = await import('../../keystore/tpm.js');
    const signer = await TpmSigner.create(tcti ?? defaultTcti());
    return { spkiPem: toPem('PUBLIC KEY', signer.publicKeySpki()), keyPem: signer.toTss2Pem(), storage };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    spkiPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    storage,
  };
}
