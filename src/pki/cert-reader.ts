/**
 * Reads the fields of an X.509 certificate (RFC 5280 §4.1) straight from its DER, keeping the
 * exact bytes of the issuer and subject Names and of the SPKI. node's X509Certificate verifies
 * signatures but exposes names only as strings and no key identifiers or extension criticality,
 * which issuance (byte-exact issuer name, AKI) and path validation (critical extensions,
 * pathLenConstraint, keyCertSign) need.
 */
import type { ErrorCode } from '../errors.js';
import { TAG } from './der.js';
import { DerReader, type DerNode } from './der-reader.js';
import { OID } from './oids.js';

export interface CertExtension {
  oid: string;
  critical: boolean;
  /** The extnValue OCTET STRING's content: the DER of the extension's own structure. */
  value: Buffer;
}

export interface CertificateFields {
  /** The exact TBSCertificate bytes, as signed. */
  tbs: Buffer;
  version: number;
  /** INTEGER content octets (two's complement, as encoded). */
  serial: Buffer;
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  subject: Buffer;
  spki: Buffer;
  extensions: CertExtension[];
}

export function readCertificate(
  der: Buffer,
  code: ErrorCode = 'bad_certificate',
  what = 'certificate',
): CertificateFields {
  const r = new DerReader(der, code, what);
  const [tbsNode, sigAlg, sig, extra] = r.children(r.expect(r.root(), TAG.SEQUENCE, 'Certificate'));
  if (extra !== undefined || sigAlg === undefined || sig === undefined)
    r.fail('Certificate must have exactly three fields');
  const f = r.children(r.expect(tbsNode, TAG.SEQUENCE, 'TBSCertificate'));
  let i = 0;
  let version = 0;
  if (f[0]?.tag === 0xa0) {
    const [v] = r.children(f[0]);
    version = r.smallInteger(r.expect(v, TAG.INTEGER, 'version'), 'version');
    i = 1;
  }
  const serial = r.integerBytes(r.expect(f[i], TAG.INTEGER, 'serialNumber'), 'serialNumber');
  r.expect(f[i + 1], TAG.SEQUENCE, 'signature AlgorithmIdentifier');
  const issuer = r.bytes(r.expect(f[i + 2], TAG.SEQUENCE, 'issuer Name'));
  const [nb, na] = r.children(r.expect(f[i + 3], TAG.SEQUENCE, 'validity'));
  if (nb === undefined || na === undefined) r.fail('validity must have notBefore and notAfter');
  const subject = r.bytes(r.expect(f[i + 4], TAG.SEQUENCE, 'subject Name'));
  const spki = r.bytes(r.expect(f[i + 5], TAG.SEQUENCE, 'subjectPublicKeyInfo'));
  const extensions: CertExtension[] = [];
  for (const opt of f.slice(i + 6)) {
    if (opt.tag === 0x81 || opt.tag === 0xa1 || opt.tag === 0x82 || opt.tag === 0xa2) continue; // unique IDs (§4.1.2.8)
    if (opt.tag !== 0xa3) r.fail(`unexpected field with tag 0x${opt.tag.toString(16)} in TBSCertificate`);
    const [list] = r.children(opt);
    extensions.push(...readExtensions(r, r.expect(list, TAG.SEQUENCE, 'extensions')));
  }
  return {
    tbs: r.bytes(tbsNode),
    version: version + 1,
    serial,
    issuer,
    notBefore: r.time(nb, 'notBefore'),
    notAfter: r.time(na, 'notAfter'),
    subject,
    spki,
    extensions,
  };
}

/** Extensions ::= SEQUENCE OF Extension (RFC 5280 §4.1); shared with CSR extensionRequest. */
export function readExtensions(r: DerReader, list: DerNode): CertExtension[] {
  const out: CertExtension[] = [];
  for (const ext of r.children(list)) {
    const parts = r.children(r.expect(ext, TAG.SEQUENCE, 'Extension'));
    const oid = r.oid(r.expect(parts[0], TAG.OID, 'extnID'), 'extnID');
    let critical = false;
    let k = 1;
    if (parts[1]?.tag === TAG.BOOLEAN) {
      critical = r.boolean(parts[1], `critical flag of ${oid}`);
      k = 2;
    }
    const value = r.content(r.expect(parts[k], TAG.OCTET_STRING, `extnValue of ${oid}`));
    // §4.2: "A certificate MUST NOT include more than one instance of a particular extension."
    if (out.some((e) => e.oid === oid)) r.fail(`extension ${oid} appears twice`);
    out.push({ oid, critical, value });
  }
  return out;
}

export function findExtension(exts: readonly CertExtension[], oid: string): CertExtension | undefined {
  return exts.find((e) => e.oid === oid);
}

/** The SPIFFE ID of an X.509-SVID: its one URI SAN (X509-SVID §2), or undefined if not exactly one. */
export function spiffeIdOfFields(fields: CertificateFields, code: ErrorCode = 'bad_certificate'): string | undefined {
  const san = findExtension(fields.extensions, OID.subjectAltName);
  const uris = san ? decodeGeneralNames(san.value, code).uris : [];
  return uris.length === 1 ? uris[0] : undefined;
}

/** BasicConstraints (§4.2.1.9): cA DEFAULT FALSE, pathLenConstraint OPTIONAL. */
export function decodeBasicConstraints(
  value: Buffer,
  code: ErrorCode = 'bad_certificate',
): { ca: boolean; pathLen: number | undefined } {
  const r = new DerReader(value, code, 'basicConstraints');
  const fields = r.children(r.expect(r.root(), TAG.SEQUENCE, 'BasicConstraints'));
  let ca = false;
  let pathLen: number | undefined;
  for (const n of fields) {
    if (n.tag === TAG.BOOLEAN) ca = r.boolean(n, 'cA');
    else pathLen = r.smallInteger(r.expect(n, TAG.INTEGER, 'pathLenConstraint'), 'pathLenConstraint');
  }
  return { ca, pathLen };
}

/** KeyUsage bit numbers (§4.2.1.3): digitalSignature(0) … keyCertSign(5), cRLSign(6). */
export const KEY_USAGE = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

/** The set bits of a KeyUsage extension value. */
export function decodeKeyUsage(value: Buffer, code: ErrorCode = 'bad_certificate'): Set<number> {
  const r = new DerReader(value, code, 'keyUsage');
  const { bytes } = r.bitString(r.root(), 'KeyUsage');
  const bits = new Set<number>();
  for (let i = 0; i < bytes.length * 8; i++) if (bytes[i >> 3]! & (0x80 >> (i & 7))) bits.add(i);
  return bits;
}

export interface GeneralNames {
  uris: string[];
  dnsNames: string[];
  /** iPAddress entries as raw octets (4 or 16 bytes). */
  ips: Buffer[];
}

/** GeneralNames (§4.2.1.6) as in SubjectAltName; other name forms are skipped. */
export function decodeGeneralNames(value: Buffer, code: ErrorCode = 'bad_certificate'): GeneralNames {
  const r = new DerReader(value, code, 'subjectAltName');
  const out: GeneralNames = { uris: [], dnsNames: [], ips: [] };
  for (const n of r.children(r.expect(r.root(), TAG.SEQUENCE, 'GeneralNames'))) {
    if (n.tag === 0x86)
      out.uris.push(r.content(n).toString('latin1')); // [6] uniformResourceIdentifier
    else if (n.tag === 0x82)
      out.dnsNames.push(r.content(n).toString('latin1')); // [2] dNSName
    else if (n.tag === 0x87) out.ips.push(Buffer.from(r.content(n))); // [7] iPAddress
  }
  return out;
}

/** KeyIdentifier of SubjectKeyIdentifier (§4.2.1.2). */
export function decodeSubjectKeyIdentifier(value: Buffer, code: ErrorCode = 'bad_certificate'): Buffer {
  const r = new DerReader(value, code, 'subjectKeyIdentifier');
  return Buffer.from(r.content(r.expect(r.root(), TAG.OCTET_STRING, 'SubjectKeyIdentifier')));
}

/** keyIdentifier [0] of AuthorityKeyIdentifier (§4.2.1.1), if present. */
export function decodeAuthorityKeyIdentifier(value: Buffer, code: ErrorCode = 'bad_certificate'): Buffer | undefined {
  const r = new DerReader(value, code, 'authorityKeyIdentifier');
  const kid = r.children(r.expect(r.root(), TAG.SEQUENCE, 'AuthorityKeyIdentifier')).find((n) => n.tag === 0x80);
  return kid === undefined ? undefined : Buffer.from(r.content(kid));
}
