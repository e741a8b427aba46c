/**
 * A device key held in a PEM file (the x509 join's `key: /path/idevid.key`): ECDSA P-256 or
 * P-384, or RSA >= 2048 bits signing with PSS (default) or PKCS#1 v1.5. PKCS#8, SEC1
 * ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") encodings are read; encrypted keys are
 * refused (there is nowhere safe to keep a passphrase that is safer than the file's mode).
 *
 * Like every file key it is exportable, and reports so.
 */
import { constants, createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SigilError } from '../errors.js';
import type { DeviceSignatureAlgorithm, DeviceSigner } from './signer.js';

export type RsaSignatureAlgorithm = 'PS256' | 'RS256';

const MIN_RSA_BITS = 2048;

/** PS256 salt: the digest length (RFC 7518 §3.5), which every verifier accepts. */
export const PSS_SALT_LENGTH = 32;

export class PemKeySigner implements DeviceSigner {
  readonly storage = 'software' as const;
  readonly exportable = true as const;
  readonly algorithm: DeviceSignatureAlgorithm;
  readonly #key: KeyObject;
  readonly #spki: Buffer;

  private constructor(key: KeyObject, algorithm: DeviceSignatureAlgorithm) {
    this.#key = key;
    this.algorithm = algorithm;
    this.#spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  }

  /** Parse a private key PEM. `rsa` picks the RSA scheme (default PS256); ignored for EC keys. */
  static fromPem(pem: string, opts: { rsa?: RsaSignatureAlgorithm; what?: string } = {}): PemKeySigner {
    const what = opts.what ?? 'device key';
    if (/ENCRYPTED/.test(pem))
      throw new SigilError(
        'config_invalid',
        `${what}: encrypted private keys are not supported; store it unencrypted with mode 0600, or on a PKCS#11 token`,
      );
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch (err) {
      throw new SigilError('config_invalid', `${what}: not a PEM private key (PKCS#8, SEC1 or PKCS#1)`, { cause: err });
    }
    return new PemKeySigner(key, algorithmFor(key, opts.rsa ?? 'PS256', what));
  }

  static fromFile(path: string, opts: { rsa?: RsaSignatureAlgorithm } = {}): PemKeySigner {
    let pem: string;
    try {
      pem = readFileSync(path, 'utf8');
    } catch (err) {
      throw new SigilError(
        'config_invalid',
        `cannot read device key ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        { cause: err },
      );
    }
    return PemKeySigner.fromPem(pem, { ...opts, what: `device key ${path}` });
  }

  publicKeySpki(): Buffer {
    return Buffer.from(this.#spki);
  }

  sign(data: Buffer): Promise<Buffer> {
    switch (this.algorithm) {
      case 'ES256':
        return Promise.resolve(cryptoSign('sha256', data, { key: this.#key, dsaEncoding: 'der' }));
      case 'ES384':
        return Promise.resolve(cryptoSign('sha384', data, { key: this.#key, dsaEncoding: 'der' }));
      case 'RS256':
        return Promise.resolve(cryptoSign('sha256', data, { key: this.#key, padding: constants.RSA_PKCS1_PADDING }));
      case 'PS256':
        return Promise.resolve(
          cryptoSign('sha256', data, {
            key: this.#key,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: PSS_SALT_LENGTH,
          }),
        );
    }
  }
}

function algorithmFor(key: KeyObject, rsa: RsaSignatureAlgorithm, what: string): DeviceSignatureAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    throw new SigilError('unsupported_key', `${what}: EC curve ${curve ?? '?'} is not supported (use P-256 or P-384)`);
  }
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS)
      throw new SigilError(
        'unsupported_key',
        `${what}: RSA key of ${bits} bits is too small (at least ${MIN_RSA_BITS})`,
      );
    // An RSASSA-PSS-only key (id-RSASSA-PSS SPKI) cannot make PKCS#1 v1.5 signatures.
    return type === 'rsa-pss' ? 'PS256' : rsa;
  }
  throw new SigilError(
    'unsupported_key',
    `${what}: ${type ?? 'unknown'} keys are not supported (use EC P-256, P-384 or RSA)`,
  );
}
