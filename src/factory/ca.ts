/**
 * The factory CA: the certificate and key that sign IDevID certificates on the production line.
 * The key is either a PEM file (PKCS#8, SEC1 or PKCS#1) or a key on a PKCS#11 token — an HSM
 * in a real factory, SoftHSM2 in tests — and both are used through the same {@link DeviceSigner},
 * so issuance (idevid.ts) does not know which it is.
 *
 * `--ca-cert` may be a bundle: the first certificate is the issuing CA (whose key signs), the
 * rest its chain up to (and possibly including) the root. The chain minus self-signed roots is
 * written after each IDevID, so a device presents leaf + intermediates and the verifier needs
 * only the root.
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SigilError } from '../errors.js';
import { PemKeySigner } from '../keystore/pem-key.js';
import { Pkcs11Signer, type Pkcs11KeyRef } from '../keystore/pkcs11.js';
import { parsePkcs11Uri } from '../keystore/pkcs11/uri.js';
import type { DeviceSigner } from '../keystore/signer.js';
import {
  decodeBasicConstraints,
  decodeKeyUsage,
  decodeSubjectKeyIdentifier,
  findExtension,
  KEY_USAGE,
  readCertificate,
} from '../pki/cert-reader.js';
import { signerAlgorithmId } from '../pki/certificate.js';
import { authorityKeyIdentifier } from '../pki/extensions.js';
import { OID } from '../pki/oids.js';
import { pemToDers } from '../pki/pem.js';
import { keyIdentifier, readSpki } from '../pki/spki.js';

export interface FactoryCa {
  /** The issuing CA certificate, DER. */
  readonly certDer: Buffer;
  /** Certificates above it that a device should present (intermediates; self-signed roots left out). */
  readonly chainDers: readonly Buffer[];
  readonly signer: DeviceSigner;
  /** Byte-exact subject of the CA: the issuer Name of every IDevID (RFC 5280 §4.1.2.4). */
  readonly subjectDer: Buffer;
  /** The AuthorityKeyIdentifier extension every IDevID carries (§4.2.1.1). */
  readonly akiExt: Buffer;
  readonly notAfter: Date;
  /** "file" or "pkcs11", for the manifest and messages. */
  readonly keyStorage: 'file' | 'pkcs11';
  close(): void;
}

/** Where the CA key is: a PEM file, or a PKCS#11 URI with the PIN in a file. */
export type FactoryCaKey = { keyFile: string } | { keyUri: string; pinFile?: string; pinEnv?: string; module?: string };

export interface FactoryCaSource {
  certFile: string;
  key: FactoryCaKey;
}

function readCaBundle(certFile: string): Buffer[] {
  let text: string;
  try {
    text = readFileSync(certFile, 'utf8');
  } catch (e) {
    throw new SigilError(
      'config_invalid',
      `cannot read the factory CA certificate ${certFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  return pemToDers(text, 'CERTIFICATE', 'config_invalid');
}

/** A PKCS#11 key reference from an RFC 7512 URI plus the CLI's --pkcs11-module / --pin-file. */
export function pkcs11RefFromUri(key: {
  keyUri: string;
  pinFile?: string;
  pinEnv?: string;
  module?: string;
}): Pkcs11KeyRef {
  const u = parsePkcs11Uri(key.keyUri);
  const module = u.modulePath ?? key.module;
  if (module === undefined)
    throw new SigilError(
      'config_invalid',
      'the PKCS#11 module is needed: module-path= in the key URI, or --pkcs11-module',
    );
  if (u.token === undefined) throw new SigilError('config_invalid', 'the PKCS#11 key URI needs token=<label>');
  if (u.object === undefined && u.id === undefined)
    throw new SigilError('config_invalid', 'the PKCS#11 key URI needs object=<label> or id=<bytes>');
  const pinFile = u.pinFile ?? key.pinFile;
  return {
    storage: 'pkcs11',
    module,
    tokenLabel: u.token,
    ...(u.object !== undefined ? { keyLabel: u.object } : {}),
    ...(u.id !== undefined ? { keyId: u.id.toString('hex') } : {}),
    ...(pinFile !== undefined ? { pinFile } : {}),
    ...(key.pinEnv !== undefined ? { pinEnv: key.pinEnv } : {}),
  };
}

function openSigner(key: FactoryCaKey): { signer: DeviceSigner; storage: 'file' | 'pkcs11' } {
  // RSA CA keys sign with PKCS#1 v1.5: sha256WithRSAEncryption is what every verifier takes.
  if ('keyFile' in key) return { signer: PemKeySigner.fromFile(key.keyFile, { rsa: 'RS256' }), storage: 'file' };
  return { signer: Pkcs11Signer.open(pkcs11RefFromUri(key), { rsa: 'RS256' }), storage: 'pkcs11' };
}

const isSelfSigned = (der: Buffer): boolean => {
  const f = readCertificate(der, 'config_invalid', 'CA chain certificate');
  return f.subject.equals(f.issuer);
};

/**
 * Open the factory CA and check it can issue: a CA certificate (BasicConstraints cA, KeyUsage
 * keyCertSign when present), still valid, whose public key is the key's, with a key algorithm
 * certificates can be signed with. Close it when done (a PKCS#11 session).
 */
export function openFactoryCa(src: FactoryCaSource, now: Date = new Date()): FactoryCa {
  const [certDer, ...above] = readCaBundle(src.certFile);
  const fields = readCertificate(certDer!, 'config_invalid', `factory CA certificate ${src.certFile}`);
  const bcExt = findExtension(fields.extensions, OID.basicConstraints);
  if (!bcExt || !decodeBasicConstraints(bcExt.value, 'config_invalid').ca) {
    throw new SigilError('config_invalid', `${src.certFile} is not a CA certificate (BasicConstraints cA=TRUE)`);
  }
  const kuExt = findExtension(fields.extensions, OID.keyUsage);
  if (kuExt && !decodeKeyUsage(kuExt.value, 'config_invalid').has(KEY_USAGE.keyCertSign)) {
    throw new SigilError('config_invalid', `${src.certFile}: the CA certificate's KeyUsage lacks keyCertSign`);
  }
  if (fields.notAfter.getTime() <= now.getTime())
    throw new SigilError(
      'config_invalid',
      `the factory CA certificate ${src.certFile} expired at ${fields.notAfter.toISOString()}`,
    );

  const { signer, storage } = openSigner(src.key);
  try {
    signerAlgorithmId(signer.algorithm);
    const certKey = createPublicKey({ key: Buffer.from(fields.spki), format: 'der', type: 'spki' });
    if (!createPublicKey({ key: signer.publicKeySpki(), format: 'der', type: 'spki' }).equals(certKey)) {
      throw new SigilError(
        'config_invalid',
        `the factory CA key does not belong to ${src.certFile} (their public keys differ)`,
      );
    }
    const skiExt = findExtension(fields.extensions, OID.subjectKeyIdentifier);
    const keyId = skiExt
      ? decodeSubjectKeyIdentifier(skiExt.value, 'config_invalid')
      : keyIdentifier(readSpki(Buffer.from(fields.spki), 'config_invalid', 'CA public key').publicKey);
    return {
      certDer: certDer!,
      chainDers: above.filter((d) => !isSelfSigned(d)),
      signer,
      subjectDer: Buffer.from(fields.subject),
      akiExt: authorityKeyIdentifier(keyId),
      notAfter: fields.notAfter,
      keyStorage: storage,
      close: () => signer.close?.(),
    };
  } catch (e) {
    signer.close?.();
    throw e;
  }
}
