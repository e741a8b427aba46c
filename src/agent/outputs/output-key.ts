/**
 * The key pair behind an X.509 output (database, kubernetes): ECDSA P-256, fresh at every
 * rotation. `software` writes a PKCS#8 key; `tpm` makes the key inside the TPM (under the SRK,
 * keystore/tpm.ts) and writes a `TSS2 PRIVATE KEY` file (keystore/tss2-pem.ts) — the workload
 * then uses the key through OpenSSL's tpm2 provider and the private key never exists on disk.
 */
import { SoftwareSigner } from '../../keystore/software.js';
import type { TpmAccesses } from '../../keystore/tpm-access.js';
import { buildCsr } from '../../pki/csr.js';
import { toPem } from '../../pki/pem.js';

export interface OutputKey {
  /** SubjectPublicKeyInfo, PEM "PUBLIC KEY": what the answer's leaf must certify. */
  spkiPem: string;
  /** PKCS#10 signed by the key, PEM: what the credential request carries (proof of possession). */
  csrPem: string;
  /** PKCS#8 PEM, or TSS2 PRIVATE KEY PEM for a TPM key. */
  keyPem: string;
  storage: 'software' | 'tpm';
}

/** Default TPM for `key: tpm` without `tcti:` (the variable tpm2-tools read). */
export const defaultTcti = (): string => process.env.TPM2TOOLS_TCTI ?? 'device:/dev/tpmrm0';

/** `tpm`: the agent's TPMs, so that the key is made in turn with the agent's other uses of that TPM. */
export async function createOutputKey(
  storage: 'software' | 'tpm' = 'software',
  tcti?: string,
  tpm?: TpmAccesses,
): Promise<OutputKey> {
  if (storage === 'tpm') {
    // Loaded only when used: the TPM stack is large and most outputs never need it.
    const { TpmSigner } = await import('../../keystore/tpm.js');
    const { TpmAccess } = await import('../../keystore/tpm-access.js');
    const at = tcti ?? defaultTcti();
    const signer = await TpmSigner.create(tpm?.for(at) ?? new TpmAccess(at));
    return {
      spkiPem: toPem('PUBLIC KEY', signer.publicKeySpki()),
      csrPem: toPem('CERTIFICATE REQUEST', await buildCsr(signer)),
      keyPem: signer.toTss2Pem(),
      storage,
    };
  }
  const signer = SoftwareSigner.generate();
  return {
    spkiPem: toPem('PUBLIC KEY', signer.publicKeySpki()),
    csrPem: toPem('CERTIFICATE REQUEST', await buildCsr(signer)),
    keyPem: signer.toPkcs8Pem(),
    storage,
  };
}
