/**
 * AWS's public certificates for instance identity documents, one per region and signature
 * kind, as AWS publishes them in the EC2 User Guide ("Verify the instance identity document").
 * A directory laid out as
 *
 *   <dir>/dsa/<region>.pem       signs the `pkcs7` document (DSA, SHA-1)
 *   <dir>/rsa2048/<region>.pem   signs the `rsa2048` document (RSA-2048, SHA-256)
 *   <dir>/rsa/<region>.pem       signs the raw `signature` (RSA, SHA-256)
 *
 * Sigil ships AWS's set in `assets/aws-iid-certs/` (its README says where each file came from);
 * a join rule's `certs_dir` replaces it, e.g. for a new region or a rotated certificate.
 *
 * Each file must hold exactly one certificate that is self-signed (every AWS one is), whose
 * self-signature verifies and which is valid now: a file altered by one byte, truncated or
 * expired is refused (`aws_certificate_invalid`) instead of being trusted for what it says.
 * Files are read at every use (a few hundred bytes) and their parse and checks cached by
 * content, so a replaced file takes effect at once.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { SigilError } from '../../errors.js';
import { readCertificate } from '../../pki/cert-reader.js';
import { parsePem } from '../../pki/pem.js';
import type { AwsSignatureKind } from './wire.js';

/** The certificates bundled with Sigil (project root `assets/aws-iid-certs/`, from src/ or dist/). */
export const BUNDLED_AWS_CERTS_DIR = fileURLToPath(new URL('../../../assets/aws-iid-certs/', import.meta.url));

export const CERT_SUBDIR: Record<AwsSignatureKind, string> = { pkcs7: 'dsa', rsa2048: 'rsa2048', signature: 'rsa' };
const KEY_TYPE: Record<AwsSignatureKind, string> = { pkcs7: 'dsa', rsa2048: 'rsa', signature: 'rsa' };

export const REGION_RE = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

export interface Loaded {
  cert: X509Certificate;
  notBefore: Date;
  notAfter: Date;
}
/** One issuer's checked AWS certificates, by kind, file and content hash (join/caches.ts). */
export type AwsCertCache = Map<string, Loaded | SigilError>;

export function createAwsCertCache(): AwsCertCache {
  return new Map();
}
const MAX_ENTRIES = 512;

function invalid(file: string, why: string): SigilError {
  return new SigilError(
    'aws_certificate_invalid',
    `the AWS certificate ${file} ${why}; restore it from AWS's documentation (docs/join-aws.md)`,
  );
}

function load(file: string, text: string, kind: AwsSignatureKind): Loaded | SigilError {
  let der: Buffer;
  let validity: { notBefore: Date; notAfter: Date };
  try {
    const blocks = parsePem(text, 'aws_certificate_invalid');
    if (blocks.length !== 1 || blocks[0]!.label !== 'CERTIFICATE')
      return invalid(file, `must hold exactly one CERTIFICATE block (found ${blocks.map((b) => b.label).join(', ')})`);
    der = blocks[0]!.der;
    validity = readCertificate(der, 'aws_certificate_invalid', file); // strict DER, one value, no trailing bytes
  } catch (e) {
    return invalid(file, `is not a PEM certificate (${(e as Error).message})`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return invalid(file, 'cannot be parsed as an X.509 certificate');
  }
  let keyType: string | undefined;
  let selfSigned = false;
  try {
    keyType = cert.publicKey.asymmetricKeyType;
    selfSigned = cert.issuer === cert.subject && cert.verify(cert.publicKey);
  } catch {
    return invalid(file, 'holds a public key that cannot be decoded');
  }
  if (keyType !== KEY_TYPE[kind])
    return invalid(
      file,
      `holds a ${keyType ?? 'unknown'} key; ${kind} documents are signed with ${KEY_TYPE[kind].toUpperCase()}`,
    );
  if (!selfSigned)
    return invalid(file, 'is not an intact self-signed certificate (its self-signature does not verify)');
  return { cert, notBefore: validity.notBefore, notAfter: validity.notAfter };
}

/**
 * The certificate for `region`'s `kind` documents from `dir`, checked at `now`.
 * Throws `aws_region_unknown` (no such file) or `aws_certificate_invalid`.
 */
export function regionCertificate(
  dir: string,
  kind: AwsSignatureKind,
  region: string,
  now: Date,
  cache: AwsCertCache | undefined,
): X509Certificate {
  if (!REGION_RE.test(region))
    throw new SigilError(
      'aws_evidence_malformed',
      `the document's region ${JSON.stringify(region.slice(0, 40))} is not a region name`,
    );
  const file = join(dir, CERT_SUBDIR[kind], `${region}.pem`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SigilError(
        'aws_region_unknown',
        `no AWS certificate for ${kind} documents of region ${region} (${file}); add AWS's certificate for the region there, or set certs_dir in the join rule`,
      );
    }
    throw invalid(file, `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const key = `${kind}:${file}:${createHash('sha256').update(text).digest('hex')}`;
  let hit = cache?.get(key);
  if (hit === undefined) {
    hit = load(file, text, kind);
    if (cache !== undefined && cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value!);
    cache?.set(key, hit);
  }
  if (hit instanceof SigilError) throw hit;
  const { cert, notBefore, notAfter } = hit;
  if (now > notAfter) throw invalid(file, `expired at ${notAfter.toISOString()} (AWS publishes a renewed one)`);
  if (now < notBefore) throw invalid(file, `is not valid before ${notBefore.toISOString()}`);
  return cert;
}
