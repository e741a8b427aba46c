/**
 * Encoders for the X.509 v3 extensions Sigil writes (RFC 5280 §4.2.1). Each returns a complete
 * `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`.
 * DER omits a BOOLEAN equal to its DEFAULT (X.690 §11.5), so non-critical extensions carry no
 * critical field at all, and BasicConstraints for an end entity is an empty SEQUENCE.
 */
import { SigilError, type ErrorCode } from '../errors.js';
import { boolean, implicit, integer, namedBits, octetString, oid, sequence } from './der.js';
import { ipToBytes } from './ip.js';
import { OID } from './oids.js';

export function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(extnId), boolean(true), octetString(value))
    : sequence(oid(extnId), octetString(value));
}

/**
 * §4.2.1.9, always critical (§4.2.1.9 requires it on CAs; X509-SVID §4.1 has leaves state
 * cA=FALSE explicitly, so they carry the extension too, with an empty SEQUENCE).
 */
export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  if (!ca) return extension(OID.basicConstraints, true, sequence());
  const fields = [boolean(true)];
  if (pathLen !== undefined) {
    if (!Number.isInteger(pathLen) || pathLen < 0)
      throw new TypeError(`pathLen must be a non-negative integer, got ${pathLen}`);
    fields.push(integer(pathLen));
  }
  return extension(OID.basicConstraints, true, sequence(...fields));
}

/** §4.2.1.3, critical as the SPIFFE X509-SVID spec §4.3 requires. `bits` are KeyUsage bit numbers. */
export function keyUsage(bits: readonly number[]): Buffer {
  return extension(OID.keyUsage, true, namedBits(bits));
}

/** §4.2.1.12, not critical. */
export function extKeyUsage(purposes: readonly string[]): Buffer {
  return extension(OID.extKeyUsage, false, sequence(...purposes.map((p) => oid(p))));
}

/** §4.2.1.2, never critical. */
export function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyId));
}

/** §4.2.1.1 with only keyIdentifier [0] IMPLICIT OCTET STRING; never critical. */
export function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return extension(OID.authorityKeyIdentifier, false, sequence(implicit(0, keyId)));
}

export interface AltNames {
  uris?: readonly string[];
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
}

// RFC 1034 §3.5 preferred name syntax as relaxed by RFC 1123 §2.1, plus a leading "*." wildcard.
const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

export function checkDnsName(name: string, code: ErrorCode = 'bad_request'): void {
  const labels = typeof name === 'string' ? name.split('.') : [];
  if (labels[0] === '*' && labels.length > 2) labels.shift();
  if (typeof name !== 'string' || name.length > 253 || labels.length === 0 || !labels.every((l) => DNS_LABEL.test(l))) {
    throw new SigilError(code, `invalid DNS name "${String(name).slice(0, 80)}" for subjectAltName`);
  }
}

/**
 * subjectAltName (§4.2.1.6). URIs first (the SPIFFE ID), then DNS names, then IP addresses.
 * Critical when the subject Name is empty, as §4.1.2.6 requires.
 */
export function subjectAltName(names: AltNames, critical: boolean, code: ErrorCode = 'bad_request'): Buffer {
  const entries: Buffer[] = [];
  for (const uri of names.uris ?? []) {
    if (!/^[\x21-\x7e]+$/.test(uri))
      throw new SigilError(code, `URI "${uri.slice(0, 80)}" must be printable ASCII without spaces`);
    entries.push(implicit(6, Buffer.from(uri, 'latin1'))); // [6] uniformResourceIdentifier IA5String
  }
  for (const dns of names.dnsNames ?? []) {
    checkDnsName(dns, code);
    entries.push(implicit(2, Buffer.from(dns, 'latin1'))); // [2] dNSName IA5String
  }
  for (const ip of names.ipAddresses ?? []) {
    const bytes = ipToBytes(ip);
    if (bytes === undefined)
      throw new SigilError(code, `invalid IP address "${String(ip).slice(0, 80)}" for subjectAltName`);
    entries.push(implicit(7, bytes)); // [7] iPAddress OCTET STRING
  }
  if (entries.length === 0) throw new TypeError('subjectAltName needs at least one name (§4.2.1.6)');
  return extension(OID.subjectAltName, critical, sequence(...entries));
}
