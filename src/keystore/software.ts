/**
 * The software key backend: an ECDSA P-256 private key held in process memory as a Node
 * KeyObject. It exists for hosts without a TPM or PKCS#11 token; because the key can be read
 * out (and is persisted as PKCS#8 in the agent's 0600 state database), it always reports
 * `exportable: true`, which status, audit and the issuer's certificate record surface
 * (ARCHITECTURE principle 2).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../errors.js';
import type { Signer } from './signer.js';

export class SoftwareSigner implements Signer {
  readonly storage = 'software' as const;
  readonly exportable = true as const;
  readonly algorithm = 'ES256' as const;

  readonly #key: KeyObject;
  // SPKI is asked for on every CSR and status call; derive it once.
  readonly #spki: Buffer;

  private constructor(key: KeyObject) {
    this.#key = key;
    this.#spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  }

  /** A fresh P-256 key (named curve, so the SPKI carries the curve OID as RFC 5480 §2.1.1 requires). */
  static generate(): SoftwareSigner {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return new SoftwareSigner(privateKey);
  }

  /**
   * Load a key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Anything else — unparseable,
   * encrypted, RSA, another curve — is refused with a coded error, never a raw OpenSSL message.
   */
  static fromPkcs8Pem(pem: string): SoftwareSigner {
    if (typeof pem !== 'string' || !pem.includes('-----BEGIN PRIVATE KEY-----')) {
      throw new SigilError('config_invalid', 'software key: expected a PKCS#8 PEM ("BEGIN PRIVATE KEY")');
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (err) {
      throw new SigilError('config_invalid', 'software key: the PKCS#8 PEM could not be parsed', { cause: err });
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      const kind =
        key.asymmetricKeyType === 'ec'
          ? `EC ${key.asymmetricKeyDetails?.namedCurve ?? '?'}`
          : String(key.asymmetricKeyType);
      throw new SigilError('unsupported_key', `software key: expected ECDSA P-256, got ${kind}`);
    }
    return new SoftwareSigner(key);
  }

  toPkcs8Pem(): string {
    return this.#key.export({ type: 'pkcs8', format: 'pem' }) as string;
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.#spki);
  }

  /** SHA-256 then ECDSA; `dsaEncoding: 'der'` gives the ECDSA-Sig-Value X.509 wants (RFC 5480 §2.2.3). */
  sign(data: Buffer): Promise<Buffer> {
    return Promise.resolve(cryptoSign('sha256', data, { key: this.#key, dsaEncoding: 'der' }));
  }
}
