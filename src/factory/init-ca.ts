/**
 * `sigil factory init-ca`: a self-signed factory CA for a test line or a lab — in files, or with
 * its key generated on a PKCS#11 token (never leaving it). A production line would rather use
 * an issuing CA under an offline root; `sigil factory provision --ca-cert` takes that bundle as
 * well.
 *
 * The certificate: ECDSA P-256, BasicConstraints cA=TRUE pathLen 0 (it signs devices, not
 * CAs), KeyUsage keyCertSign + cRLSign (it also signs the CRL that revokes devices), SKI; valid
 * 30 years by default, so that the 20-year IDevIDs it issues (IEEE 802.1AR §8.5: the IDevID
 * lives as long as the device) are not cut short.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../errors.js';
import { PemKeySigner } from '../keystore/pem-key.js';
import { Pkcs11Signer, type Pkcs11KeyRef } from '../keystore/pkcs11.js';
import type { DeviceSigner } from '../keystore/signer.js';
import { KEY_USAGE } from '../pki/cert-reader.js';
import { encodeTbs, signerAlgorithmId, signTbsWith } from '../pki/certificate.js';
import { integer, time } from '../pki/der.js';
import { basicConstraints, keyUsage, subjectKeyIdentifier } from '../pki/extensions.js';
import { encodeName, type NameSpec } from '../pki/name.js';
import { toPem } from '../pki/pem.js';
import { randomSerial } from '../pki/serial.js';
import { keyIdentifier, readSpki } from '../pki/spki.js';
import { ensureDir, writeFileAtomic } from '../util/atomic-file.js';
import { fingerprintOf } from './manifest.js';

export const FACTORY_CA_CERT = 'factory-ca.pem';
export const FACTORY_CA_KEY = 'factory-ca.key';
const YEAR_MS = 365.25 * 86_400_000;
const BACKDATE_MS = 5 * 60_000;

export interface InitCaOptions {
  outDir: string;
  commonName?: string;
  organization?: string;
  years?: number;
  /** Generate the key on this token instead of in a file. */
  pkcs11?: { module: string; tokenLabel: string; keyLabel?: string; pinFile?: string; pinEnv?: string };
  now?: Date;
}

export interface InitCaResult {
  cert_file: string;
  /** The PEM key file (file CAs). */
  key_file?: string;
  /** The RFC 7512 URI of the key on the token (PKCS#11 CAs): pass it to --ca-key-uri. */
  key_uri?: string;
  subject: string;
  not_after: string;
  fingerprint: string;
}

/** RFC 7512 §2.3: percent-encode everything but unreserved characters in a path attribute. */
function pct(s: string): string {
  return [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9\-._~]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0').toUpperCase()}`,
    )
    .join('');
}

export function pkcs11KeyUri(ref: Pkcs11KeyRef): string {
  return `pkcs11:token=${pct(ref.tokenLabel)};object=${pct(ref.keyLabel ?? '')}?module-path=${ref.module}`;
}

async function selfSigned(signer: DeviceSigner, subject: NameSpec, notBefore: Date, notAfter: Date): Promise<Buffer> {
  const name = encodeName(subject);
  const spki = signer.publicKeySpki();
  const tbs = encodeTbs({
    serial: integer(randomSerial()),
    algorithmId: signerAlgorithmId(signer.algorithm),
    issuer: name,
    notBefore: time(notBefore),
    notAfter: time(notAfter),
    subject: name,
    spki,
    extensions: [
      basicConstraints(true, 0),
      keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
      subjectKeyIdentifier(keyIdentifier(readSpki(spki).publicKey)),
    ],
  });
  return signTbsWith(tbs, signer);
}

export async function initFactoryCa(o: InitCaOptions): Promise<InitCaResult> {
  const years = o.years ?? 30;
  if (!Number.isFinite(years) || years <= 0 || years > 100)
    throw new SigilError('bad_request', `--years must be between 0 and 100 (got ${years})`);
  const certFile = join(o.outDir, FACTORY_CA_CERT);
  const keyFile = join(o.outDir, FACTORY_CA_KEY);
  if (existsSync(certFile))
    throw new SigilError(
      'conflict',
      `${certFile} already exists; a factory CA is created once (remove it to start over)`,
    );
  ensureDir(o.outDir, 0o755);
  const subject: NameSpec = [
    ['O', o.organization ?? 'Sigil Factory'],
    ['CN', o.commonName ?? 'Sigil Factory CA'],
  ];
  const now = o.now ?? new Date();
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(Math.floor((now.getTime() + years * YEAR_MS) / 1000) * 1000);

  let signer: DeviceSigner;
  let keyUri: string | undefined;
  if (o.pkcs11) {
    const ref: Omit<Pkcs11KeyRef, 'storage'> = {
      module: o.pkcs11.module,
      tokenLabel: o.pkcs11.tokenLabel,
      keyLabel: o.pkcs11.keyLabel ?? 'sigil-factory-ca',
      ...(o.pkcs11.pinFile !== undefined ? { pinFile: o.pkcs11.pinFile } : {}),
      ...(o.pkcs11.pinEnv !== undefined ? { pinEnv: o.pkcs11.pinEnv } : {}),
    };
    let existing: Pkcs11Signer | undefined;
    try {
      existing = Pkcs11Signer.open({ storage: 'pkcs11', ...ref });
    } catch (e) {
      if (!(e instanceof SigilError && e.code === 'config_invalid' && /^no private key/.test(e.message))) throw e;
    }
    if (existing) {
      existing.close();
      throw new SigilError(
        'conflict',
        `token "${ref.tokenLabel}" already holds a key labelled "${ref.keyLabel}"; pick another --key-label`,
      );
    }
    const s = Pkcs11Signer.generate(ref);
    signer = s;
    keyUri = pkcs11KeyUri(s.ref);
  } else {
    if (existsSync(keyFile))
      throw new SigilError('conflict', `${keyFile} already exists; a factory CA is created once`);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    signer = PemKeySigner.fromPem(pem, { what: 'factory CA key' });
    writeFileAtomic(keyFile, pem, { mode: 0o600 });
  }
  try {
    const der = await selfSigned(signer, subject, notBefore, notAfter);
    writeFileAtomic(certFile, toPem('CERTIFICATE', der), { mode: 0o644 });
    return {
      cert_file: certFile,
      ...(keyUri === undefined ? { key_file: keyFile } : { key_uri: keyUri }),
      subject: subject.map(([k, v]) => `${k}=${v}`).join(', '),
      not_after: notAfter.toISOString(),
      fingerprint: fingerprintOf(der),
    };
  } finally {
    signer.close?.();
  }
}
