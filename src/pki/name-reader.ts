/**
 * Reading X.501 Names (RFC 5280 §4.1.2.4) from DER: the RDN sequence with each attribute's
 * type OID and string value. Used where a name is *inspected* — allow rules on a device
 * certificate's subject and issuer, directoryName name constraints — never to rebuild a name
 * (issuance copies names byte for byte, name.ts subjectNameDer).
 *
 * Comparison follows RFC 5280 §7.1 in its common simplification (what OpenSSL and browsers do):
 * case-insensitive, leading/trailing white space removed, inner runs of white space collapsed.
 */
import type { ErrorCode } from '../errors.js';
import { TAG } from './der.js';
import { DerReader, type DerNode } from './der-reader.js';
import { OID } from './oids.js';

export interface NameAttributeValue {
  /** Attribute type, dotted OID. */
  type: string;
  /** The value as text (hex `#…` of the DER for non-string values, as RFC 4514 §2.4 writes them). */
  value: string;
}

/** RelativeDistinguishedName: usually one attribute. */
export type Rdn = NameAttributeValue[];

/** Short names (RFC 4514 §3 plus the ones certificates commonly carry), for display and parsing. */
export const ATTRIBUTE_NAMES: Record<string, string> = {
  CN: OID.commonName,
  SERIALNUMBER: OID.serialNumber,
  C: OID.countryName,
  L: OID.localityName,
  ST: OID.stateOrProvinceName,
  STREET: '2.5.4.9',
  O: OID.organizationName,
  OU: OID.organizationalUnitName,
  TITLE: '2.5.4.12',
  DC: '0.9.2342.19200300.100.1.25',
  UID: '0.9.2342.19200300.100.1.1',
  EMAILADDRESS: '1.2.840.113549.1.9.1',
};
const SHORT_NAME = new Map(
  Object.entries(ATTRIBUTE_NAMES).map(([k, v]) => [
    v,
    k === 'SERIALNUMBER' ? 'serialNumber' : k === 'EMAILADDRESS' ? 'emailAddress' : k,
  ]),
);

const STRING_TAGS = new Set([0x0c, 0x12, 0x13, 0x14, 0x16, 0x1a, 0x1c, 0x1e]);

function decodeString(r: DerReader, n: DerNode): string {
  const c = r.content(n);
  switch (n.tag) {
    case 0x0c: // UTF8String
      return c.toString('utf8');
    case 0x1e: {
      // BMPString: UCS-2 big-endian
      const swapped = Buffer.from(c);
      if (swapped.length % 2 === 0) swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 0x1c: {
      // UniversalString: UCS-4 big-endian (X.680 §41). A value past U+10FFFF is no character,
      // and String.fromCodePoint would throw a RangeError on it: refuse it with our code.
      let s = '';
      for (let i = 0; i + 4 <= c.length; i += 4) {
        const cp = c.readUInt32BE(i);
        if (cp > 0x10ffff) r.fail(`UniversalString holds 0x${cp.toString(16)}, which is not a Unicode code point`);
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default: // Printable, IA5, Numeric, Visible, Teletex (read as Latin-1)
      return c.toString('latin1');
  }
}

/** Parse a Name's DER into its RDNs, most significant first (DER order). */
export function readName(der: Buffer, code: ErrorCode = 'bad_certificate', what = 'Name'): Rdn[] {
  const r = new DerReader(der, code, what);
  return r.children(r.expect(r.root(), TAG.SEQUENCE, 'Name')).map((rdn) =>
    r.children(r.expect(rdn, TAG.SET, 'RelativeDistinguishedName')).map((atv) => {
      const [type, value] = r.children(r.expect(atv, TAG.SEQUENCE, 'AttributeTypeAndValue'));
      const oid = r.oid(r.expect(type, TAG.OID, 'attribute type'), 'attribute type');
      if (value === undefined) r.fail(`attribute ${oid} has no value`);
      return {
        type: oid,
        value: STRING_TAGS.has(value.tag) ? decodeString(r, value) : `#${r.bytes(value).toString('hex')}`,
      };
    }),
  );
}

/** Every value of attribute `oid` in the name, in order. */
export function attributeValues(rdns: readonly Rdn[], oid: string): string[] {
  return rdns.flatMap((rdn) => rdn.filter((a) => a.type === oid).map((a) => a.value));
}

/** RFC 5280 §7.1, simplified: case-folded, trimmed, inner white space collapsed. */
export function normalizeValue(v: string): string {
  return v.trim().replace(/\s+/g, ' ').toLowerCase();
}

export function rdnEqual(a: Rdn, b: Rdn): boolean {
  if (a.length !== b.length) return false;
  const key = (x: NameAttributeValue): string => `${x.type}=${normalizeValue(x.value)}`;
  const bs = b.map(key).sort();
  return a
    .map(key)
    .sort()
    .every((k, i) => k === bs[i]);
}

/** Human form, DER order, e.g. `O=Acme, OU=Devices, CN=gw-7` (for messages and audit facts). */
export function formatName(rdns: readonly Rdn[]): string {
  return (
    rdns
      .map((rdn) =>
        rdn.map((a) => `${SHORT_NAME.get(a.type) ?? a.type}=${a.value.replace(/([,+=\\])/g, '\\$1')}`).join('+'),
      )
      .join(', ') || '<empty>'
  );
}

/**
 * Parse a DN written by a person (`CN=Factory CA, O=Acme` or openssl's `/O=Acme/CN=Factory CA`)
 * into attribute/value pairs. Order is not kept: allow rules compare DNs as sets of attributes
 * (people copy DNs in both RFC 4514 and DER order). Throws TypeError naming the problem.
 */
export function parseDnPattern(text: string): NameAttributeValue[] {
  const s = text.trim();
  const slashForm = s.startsWith('/');
  const parts: string[] = [];
  let cur = '';
  for (let i = slashForm ? 1 : 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
      continue;
    }
    if (ch === (slashForm ? '/' : ',') || (!slashForm && ch === '+')) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new TypeError(`"${p.trim()}" is not ATTRIBUTE=value`);
    const name = p.slice(0, eq).trim();
    const type = ATTRIBUTE_NAMES[name.toUpperCase()] ?? (/^\d+(\.\d+)+$/.test(name) ? name : undefined);
    if (type === undefined)
      throw new TypeError(
        `unknown attribute "${name}" (use ${Object.keys(ATTRIBUTE_NAMES).join(', ')} or a dotted OID)`,
      );
    return { type, value: p.slice(eq + 1).trim() };
  });
}

/** Whether `rdns` holds exactly the attributes of `pattern` (any order, §7.1 comparison). */
export function dnMatches(rdns: readonly Rdn[], pattern: readonly NameAttributeValue[]): boolean {
  const key = (x: NameAttributeValue): string => `${x.type}=${normalizeValue(x.value)}`;
  const have = rdns.flat().map(key).sort();
  const want = pattern.map(key).sort();
  return have.length === want.length && have.every((k, i) => k === want[i]);
}
