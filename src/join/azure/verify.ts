/**
 * Is this attested data document signed by Azure's metadata service?
 *
 *  1. PKCS#7 SignedData (pki/pkcs7.ts), one signer, the JSON embedded;
 *  2. the signer's certificate is embedded (IMDS sends it) and chains, through embedded or
 *     configured intermediates, to a trust anchor of the rule, with RFC 5280 path validation
 *     at `at` (join/x509-path.ts) — Azure's signing certificates are TLS certificates from the
 *     Microsoft Azure TLS issuing CAs under DigiCert Global Root G2; every embedded
 *     certificate must be part of that path (an unused one would be unverified bytes);
 *  3. the signature over the content (RSA, SHA-256/384/512) verifies with the signer's key;
 *  4. the signer's certificate names a domain under one of `signerDomains` (metadata.azure.com:
 *     a certificate from the same public CAs for any other name proves nothing about Azure).
 *
 * `at` is the issuer's clock for a join; the genuine samples in the test fixtures are checked at
 * their own `createdOn`, since their certificates have expired since.
 */
import { SigilError } from '../../errors.js';
import { attributeValues } from '../../pki/name-reader.js';
import { OID } from '../../pki/oids.js';
import { isSignerCertificate, parseSignedData, verifySigner, type Pkcs7Codes } from '../../pki/pkcs7.js';
import { parseWith } from '../../protocol/messages.js';
import { parseCert, type ParsedCert } from '../x509-cert.js';
import { validatePath } from '../x509-path.js';
import { attestedDocumentSchema, type AttestedDocument } from './wire.js';

const CODES: Pkcs7Codes = { malformed: 'azure_evidence_malformed', invalid: 'azure_signature_invalid' };
const MAX_INTERMEDIATES = 3;

export interface AttestedTrust {
  anchors: readonly ParsedCert[];
  /** Untrusted intermediates that may complete the path (rule files, the agent's evidence). */
  intermediates: readonly ParsedCert[];
  /** e.g. ['metadata.azure.com']: the signer must hold this name or a subdomain of it. */
  signerDomains: readonly string[];
  at: Date;
}

export interface VerifiedAttested {
  /** The embedded JSON, exact bytes. */
  content: Buffer;
  doc: AttestedDocument;
  signer: ParsedCert;
  /** The signer's DNS names. */
  signerNames: string[];
}

function dnsNames(c: ParsedCert): string[] {
  const san = c.san.flatMap((n) => (n.kind === 'dns' ? [n.value.toLowerCase()] : []));
  return san.length > 0 ? san : attributeValues(c.subject, OID.commonName).map((v) => v.toLowerCase());
}

export function verifyAttestedDocument(der: Buffer, trust: AttestedTrust): VerifiedAttested {
  const p7 = parseSignedData(der, CODES, 'attested document');
  const embedded = p7.certificates.map((c, i) =>
    parseCert(c, `embedded certificate ${i + 1}`, 'azure_evidence_malformed'),
  );
  const leaf = embedded.find((c) => isSignerCertificate(p7, c.der, 'azure_evidence_malformed'));
  if (leaf === undefined)
    throw new SigilError(
      'azure_signature_invalid',
      "attested document: the signer's certificate is not embedded in the document",
    );

  let certs: ParsedCert[];
  try {
    certs = validatePath({
      leaf,
      intermediates: [...embedded.filter((c) => c !== leaf), ...trust.intermediates],
      anchors: trust.anchors,
      at: trust.at,
      maxIntermediates: MAX_INTERMEDIATES,
    }).certs;
  } catch (e) {
    if (e instanceof SigilError && e.code.startsWith('x509_'))
      throw new SigilError('azure_signer_untrusted', `attested document signer: ${e.message}`);
    throw e;
  }
  const unused = embedded.find((c) => !certs.includes(c));
  if (unused !== undefined)
    throw new SigilError(
      'azure_evidence_malformed',
      `attested document: ${unused.label} is not part of the signer's certificate path`,
    );

  verifySigner(p7, leaf.x509, { codes: CODES, digests: ['sha256', 'sha384', 'sha512'], what: 'attested document' });

  const names = dnsNames(leaf);
  const domains = trust.signerDomains.map((d) => d.toLowerCase());
  if (!names.some((n) => domains.some((d) => n === d || n.endsWith(`.${d}`) || n === `*.${d}`))) {
    throw new SigilError(
      'azure_signer_domain',
      `attested document: the signer's certificate is for ${names.join(', ') || '(no name)'}, not ${domains.join(' or ')} or a subdomain`,
    );
  }

  let json: unknown;
  try {
    json = JSON.parse(p7.content.toString('utf8'));
  } catch {
    throw new SigilError('azure_evidence_malformed', 'attested document: the signed content is not JSON');
  }
  const doc = parseWith(attestedDocumentSchema, json, 'azure_evidence_malformed', 'attested document');
  return { content: p7.content, doc, signer: leaf, signerNames: names };
}
