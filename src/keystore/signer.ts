/**
 * The one interface every key backend implements (software now; TPM and PKCS#11 later).
 * Callers never see private key material: they ask for a signature over bytes.
 */
export type KeyStorage = 'software' | 'tpm' | 'pkcs11';

/** JOSE names; ES256 = ECDSA P-256 + SHA-256, ES384 = ECDSA P-384 + SHA-384. */
export type SignatureAlgorithm = 'ES256' | 'ES384';

export interface Signer {
  /** Where the private key lives; shown in status, audit and the certificate record. */
  readonly storage: KeyStorage;
  /** True when the private key can be read out (software keys). Hardware keys must be false. */
  readonly exportable: boolean;
  readonly algorithm: SignatureAlgorithm;
  /** SubjectPublicKeyInfo, DER. */
  publicKeySpki(): Buffer;
  /**
   * Sign `data` (the signer hashes it with the algorithm's hash) and return the ECDSA
   * signature DER-encoded (ECDSA-Sig-Value, RFC 5480 §2.2.3) as X.509 and CSRs need it.
   */
  sign(data: Buffer): Promise<Buffer>;
}
