/**
 * A device-chain or CA certificate parsed once for path validation, allow rules and
 * revocation: node's X509Certificate (signatures, via OpenSSL) next to the fields Sigil reads
 * from the DER itself (names, extensions with criticality, key, signature algorithm).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import { findExtension, readCertificate, type CertificateFields } from '../pki/cert-reader.js';
import { TAG } from '../pki/der.js';
import { DerReader } from '../pki/der-reader.js';
import { readGeneralNames, type GeneralName } from '../pki/general-names.js';
import { formatName, readName, type Rdn } from '../pki/name-reader.js';
import { OID } from '../pki/oids.js';

export interface ParsedCert {
  der: Buffer;
  x509: X509Certificate;
  fields: CertificateFields;
  subject: Rdn[];
  issuer: Rdn[];
  /** subjectAltName entries (empty without the extension). */
  san: GeneralName[];
  /** Certificate.signatureAlgorithm, dotted OID. */
  signatureAlgorithm: string;
  /** Lowercase hex of the serial's magnitude, no leading zeros ("0" for zero). */
  serialHex: string;
  /** sha256:<hex> of the DER: the IDevID fingerprint manifests carry. */
  fingerprint: string;
  /** Where it came from, for messages ("device certificate", "intermediate 1", "/etc/…/ca.pem #2"). */
  label: string;
}

export function parseCert(der: Buffer, label: string, code: ErrorCode = 'x509_chain_malformed'): ParsedCert {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch {
    throw new SigilError(code, `${label} is not a parseable X.509 certificate`);
  }
  const fields = readCertificate(der, code, label);
  const sanExt = findExtension(fields.extensions, OID.subjectAltName);
  const r = new DerReader(der, code, label);
  const [, sigAlg] = r.children(r.root());
  const [algOid] = r.children(r.expect(sigAlg, TAG.SEQUENCE, 'signatureAlgorithm'));
  return {
    der,
    x509,
    fields,
    subject: readName(Buffer.from(fields.subject), code, `${label} subject`),
    issuer: readName(Buffer.from(fields.issuer), code, `${label} issuer`),
    san: sanExt === undefined ? [] : readGeneralNames(sanExt.value, code, `${label} subjectAltName`),
    signatureAlgorithm: r.oid(r.expect(algOid, TAG.OID, 'signature algorithm'), 'signature algorithm'),
    serialHex: magnitudeHex(fields.serial),
    fingerprint: `sha256:${createHash('sha256').update(der).digest('hex')}`,
    label,
  };
}

/** Hex of an INTEGER's content octets as an unsigned magnitude, without leading zeros. */
export function magnitudeHex(content: Uint8Array): string {
  const hex = Buffer.from(content).toString('hex').replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

export function describeCert(c: ParsedCert): string {
  return `${c.label} (subject "${formatName(c.subject)}")`;
}
