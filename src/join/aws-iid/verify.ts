/**
 * Is this instance identity document signed by AWS? The document's own `region` picks the
 * certificate (certs.ts), so the region is read before the signature is checked — and then
 * trusted only because the certificate for that very region verified the signature: a document
 * presented with another region's certificate fails.
 *
 *   rsa2048, pkcs7  PKCS#7 SignedData (pki/pkcs7.ts) by the region's RSA-2048 / DSA certificate,
 *                   SHA-256 / SHA-1, no embedded certificates (AWS sends none), and the signed
 *                   content must be byte for byte the document the agent sent
 *   signature       RSASSA-PKCS1-v1_5 with SHA-256 over the document bytes (RFC 8017 §8.2)
 */
import { constants, verify as cryptoVerify } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { parseSignedData, verifySigner, type Pkcs7Codes } from '../../pki/pkcs7.js';
import { parseWith } from '../../protocol/messages.js';
import { regionCertificate, type AwsCertCache } from './certs.js';
import { identityDocumentSchema, type AwsSignatureKind, type IdentityDocument } from './wire.js';

export interface SignedDocument {
  kind: AwsSignatureKind;
  /** The document bytes exactly as served. */
  document: Buffer;
  /** DER PKCS#7 (rsa2048, pkcs7) or the raw RSA signature (signature). */
  signature: Buffer;
}

export interface VerifiedDocument {
  doc: IdentityDocument;
  kind: AwsSignatureKind;
}

const CODES: Pkcs7Codes = { malformed: 'aws_evidence_malformed', invalid: 'aws_signature_invalid' };

/** The region the document claims, before anything is verified. */
function claimedRegion(document: Buffer): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(document.toString('utf8'));
  } catch {
    throw new SigilError('aws_evidence_malformed', 'the instance identity document is not JSON');
  }
  const region = (parsed as { region?: unknown } | null)?.region;
  if (typeof region !== 'string')
    throw new SigilError('aws_evidence_malformed', 'the instance identity document has no region');
  return region;
}

/** Verify `sd` against the certificates in `certsDir` at `now`; returns the document's fields. */
/** `cache`: the issuer's checked certificates (join/caches.ts); omitted, the certificate is read and checked now. */
export function verifyIdentityDocument(
  sd: SignedDocument,
  certsDir: string,
  now: Date,
  cache?: AwsCertCache,
): VerifiedDocument {
  const region = claimedRegion(sd.document);
  const cert = regionCertificate(certsDir, sd.kind, region, now, cache);
  if (sd.kind === 'signature') {
    let ok = false;
    try {
      ok = cryptoVerify(
        'sha256',
        sd.document,
        { key: cert.publicKey, padding: constants.RSA_PKCS1_PADDING },
        sd.signature,
      );
    } catch {
      ok = false;
    }
    if (!ok)
      throw new SigilError(
        'aws_signature_invalid',
        `the RSA signature over the document does not verify with AWS's certificate for ${region}`,
      );
  } else {
    const what = `${sd.kind} signature`;
    const p7 = parseSignedData(sd.signature, CODES, what);
    if (p7.certificates.length > 0)
      throw new SigilError('aws_evidence_malformed', `${what}: carries certificates, which AWS's does not`);
    verifySigner(p7, cert, {
      codes: CODES,
      digests: sd.kind === 'pkcs7' ? ['sha1'] : ['sha256'],
      what: `${what} (AWS certificate for ${region})`,
    });
    if (!p7.content.equals(sd.document))
      throw new SigilError('aws_signature_invalid', `${what}: the signed content is not the document that was sent`);
  }
  const doc = parseWith(
    identityDocumentSchema,
    JSON.parse(sd.document.toString('utf8')),
    'aws_evidence_malformed',
    'instance identity document',
  );
  return { doc, kind: sd.kind };
}
