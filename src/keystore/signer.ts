/**
 * The one interface every key backend implements (software, PKCS#11, TPM).
 * Callers never see private key material: they ask for a signature over bytes.
 */
export type KeyStorage = 'software' | 'tpm' | 'pkcs11';

/**
 * What an *identity* key signs with (JWS envelopes, CSRs). JOSE names; ES256 = ECDSA P-256 +
 * SHA-256, ES384 = ECDSA P-384 + SHA-384.
 */
export type SignatureAlgorithm = 'ES256' | 'ES384';

/**
 * What a *device* key (the x509 join's IDevID or enterprise certificate key) may sign with:
 * the identity algorithms plus RSA with SHA-256, PKCS#1 v1.5 (RS256, RFC 8017 §8.2) or PSS
 * (PS256, RFC 8017 §8.1, MGF1-SHA-256, 32-byte salt as in RFC 7518 §3.5).
 */
export type DeviceSignatureAlgorithm = SignatureAlgorithm | 'RS256' | 'PS256';

export interface Signer<A extends DeviceSignatureAlgorithm = SignatureAlgorithm> {
  /** Where the private key lives; shown in status, audit and the certificate record. */
  readonly storage: KeyStorage;
  /** True when the private key can be read out (software keys). Hardware keys must be false. */
  readonly exportable: boolean;
  readonly algorithm: A;
  /** SubjectPublicKeyInfo, DER. */
  publicKeySpki(): Buffer;
  /**
   * Sign `data` (the signer hashes it with the algorithm's hash). ECDSA signatures come back
   * DER-encoded (ECDSA-Sig-Value, RFC 5480 §2.2.3) as X.509 and CSRs need them; RSA signatures
   * are the raw signature octets.
   */
  sign(data: Buffer): Promise<Buffer>;
  /** Release what the backend holds (a PKCS#11 session, a TPM handle). Idempotent. */
  close?(): void;
}

/** A signer for a device key: any of {@link DeviceSignatureAlgorithm}. */
export type DeviceSigner = Signer<DeviceSignatureAlgorithm>;

/** Whether a device-capable signer can also serve as an identity key (ECDSA only). */
export function isIdentitySigner(s: DeviceSigner): s is Signer {
  return s.algorithm === 'ES256' || s.algorithm === 'ES384';
}
