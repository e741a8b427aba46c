/**
 * X.501 Names (RFC 5280 §4.1.2.4): `Name ::= SEQUENCE OF RelativeDistinguishedName`, each RDN a
 * SET of one AttributeTypeAndValue here (multi-valued RDNs are legal but confuse people and
 * tools). Attributes are written in the order given — order is part of the name's identity.
 */
import type { ErrorCode } from '../errors.js';
import { oid, printableString, sequence, set, utf8String } from './der.js';
import { readCertificate } from './cert-reader.js';
import { OID } from './oids.js';

export type NameAttribute = 'CN' | 'O' | 'OU' | 'C' | 'L' | 'ST' | 'serialNumber';

/** An ordered attribute list, most significant first, e.g. [['O', 'Acme'], ['CN', 'edge-7']]. */
export type NameSpec = ReadonlyArray<readonly [NameAttribute, string]>;

const ATTRIBUTES: Record<NameAttribute, { oid: string; max: number; printable: boolean }> = {
  // Upper bounds from RFC 5280 Appendix A.1 (ub-common-name 64, ub-organization-name 64, …).
  CN: { oid: OID.commonName, max: 64, printable: false },
  O: { oid: OID.organizationName, max: 64, printable: false },
  OU: { oid: OID.organizationalUnitName, max: 64, printable: false },
  L: { oid: OID.localityName, max: 128, printable: false },
  ST: { oid: OID.stateOrProvinceName, max: 128, printable: false },
  // countryName and serialNumber are PrintableString by definition (Appendix A.1).
  C: { oid: OID.countryName, max: 2, printable: true },
  serialNumber: { oid: OID.serialNumber, max: 64, printable: true },
};

/**
 * Encode a Name. DirectoryString values are UTF8String, as §4.1.2.4 requires of new
 * certificates. An empty list yields the empty Name (SEQUENCE {}), which RFC 5280 allows for
 * end entities whose identity is in a critical subjectAltName (§4.1.2.6).
 * Throws TypeError on an unknown attribute, an empty or too long value, or a bad country code:
 * names come from Sigil's own configuration and templates, never raw from an agent.
 */
export function encodeName(attrs: NameSpec): Buffer {
  const rdns: Buffer[] = [];
  for (const [attr, value] of attrs) {
    const spec = ATTRIBUTES[attr];
    if (spec === undefined) throw new TypeError(`unknown name attribute "${String(attr)}"`);
    if (typeof value !== 'string' || value.length === 0 || [...value].length > spec.max) {
      throw new TypeError(`name attribute ${attr} must be 1..${spec.max} characters`);
    }
    if (attr === 'C' && !/^[A-Z]{2}$/.test(value))
      throw new TypeError(`country "${value}" is not an ISO 3166 two-letter code`);
    let encoded: Buffer;
    try {
      encoded = spec.printable ? printableString(value) : utf8String(value);
    } catch (e) {
      throw new TypeError(`name attribute ${attr}: ${(e as Error).message}`);
    }
    rdns.push(set(sequence(oid(spec.oid), encoded)));
  }
  return sequence(...rdns);
}

/**
 * The exact DER of a certificate's subject Name. An issuer must copy it byte for byte into
 * the certificates it signs (§4.1.2.4: name chaining compares names, and some verifiers compare
 * bytes), so it is never re-encoded from a parsed form.
 */
export function subjectNameDer(certDer: Buffer, code: ErrorCode = 'bad_certificate'): Buffer {
  return Buffer.from(readCertificate(certDer, code).subject);
}

/** The exact DER of a certificate's issuer Name. */
export function issuerNameDer(certDer: Buffer, code: ErrorCode = 'bad_certificate'): Buffer {
  return Buffer.from(readCertificate(certDer, code).issuer);
}
