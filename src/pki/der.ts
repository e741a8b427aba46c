/**
 * A small DER encoder (ITU-T X.690 §8 and §10). Every function returns a complete TLV as a
 * Buffer, so callers compose certificates by nesting calls.
 *
 * Why hand-written: certificate issuance is the issuer's hot path, and the JS ASN.1 object
 * layers (@peculiar/asn1-schema, asn1js) cost more than the ECDSA signature itself. Here a
 * constructed value is one allocation plus one copy per child, and constant pieces (OIDs,
 * algorithm identifiers, issuer name) are encoded once and reused by the caller.
 *
 * Only single-byte tags are supported (tag numbers 0..30): X.509 and PKCS#10 never need more.
 */

import { OID } from './oids.js';

/** Universal tags (X.680 §8.4, Table 1). */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30, // constructed bit (0x20) included: SEQUENCE is always constructed in DER
  SET: 0x31,
} as const;

/** Number of bytes the length octets take (X.690 §8.1.3). */
function lengthSize(len: number): number {
  if (len < 0x80) return 1; // short form
  if (len < 0x100) return 2; // 0x81 LL
  if (len < 0x10000) return 3; // 0x82 LL LL
  if (len < 0x1000000) return 4;
  return 5; // 0x84 + 4 bytes; Buffers cannot exceed that anyway
}

/** Write the length octets at `offset`, return the offset after them. DER: minimal long form (§10.1). */
function writeLength(out: Buffer, offset: number, len: number): number {
  if (len < 0x80) {
    out[offset] = len;
    return offset + 1;
  }
  const n = lengthSize(len) - 1;
  out[offset++] = 0x80 | n;
  for (let i = n - 1; i >= 0; i--) out[offset++] = (len >>> (8 * i)) & 0xff;
  return offset;
}

/** The length octets alone, e.g. for tests and for callers that stream. */
export function encodeLength(len: number): Buffer {
  if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`invalid DER length ${len}`);
  const out = Buffer.allocUnsafe(lengthSize(len));
  writeLength(out, 0, len);
  return out;
}

function checkTag(tag: number): void {
  // Low tag number form only (X.690 §8.1.2.3): bits 5..1 must not be all ones.
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new RangeError(`unsupported DER tag 0x${tag.toString(16)}`);
  }
}

/** A primitive or constructed TLV with the given identifier octet and content. */
export function tlv(tag: number, content: Buffer): Buffer {
  checkTag(tag);
  const len = content.length;
  const out = Buffer.allocUnsafe(1 + lengthSize(len) + len);
  out[0] = tag;
  content.copy(out, writeLength(out, 1, len));
  return out;
}

/** A constructed TLV whose content is the concatenation of `parts` (one allocation, no concat). */
export function constructed(tag: number, parts: readonly Buffer[]): Buffer {
  checkTag(tag);
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(1 + lengthSize(len) + len);
  out[0] = tag;
  let off = writeLength(out, 1, len);
  for (const p of parts) off += p.copy(out, off);
  return out;
}

export function sequence(...parts: Buffer[]): Buffer {
  return constructed(TAG.SEQUENCE, parts);
}

/**
 * SET OF. DER (X.690 §11.6) requires the elements sorted by their encodings; Sigil mostly builds
 * single-element SETs (RDNs, attribute values), but sorting keeps any other use canonical.
 */
export function set(...parts: Buffer[]): Buffer {
  if (parts.length > 1) parts = [...parts].sort(Buffer.compare);
  return constructed(TAG.SET, parts);
}

/**
 * INTEGER from a bigint or a number (two's complement, minimal octets, X.690 §8.3.2), or from an
 * *unsigned* big-endian Buffer such as a certificate serial: leading zero octets are removed and
 * one 0x00 is prepended when the top bit is set, so the value stays positive.
 */
export function integer(value: bigint | number | Buffer): Buffer {
  if (Buffer.isBuffer(value)) return unsignedInteger(value);
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    throw new RangeError(`integer ${value} is not a safe integer`);
  let v = typeof value === 'bigint' ? value : BigInt(value);
  if (v >= 0n && v < 0x80n) return Buffer.from([TAG.INTEGER, 1, Number(v)]);
  const bytes: number[] = [];
  // Emit little-endian until the remaining value is just the sign extension of the last byte.
  for (;;) {
    const b = Number(v & 0xffn);
    bytes.push(b);
    v >>= 8n;
    if ((v === 0n && (b & 0x80) === 0) || (v === -1n && (b & 0x80) !== 0)) break;
  }
  bytes.reverse();
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

function unsignedInteger(magnitude: Buffer): Buffer {
  if (magnitude.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const pad = (magnitude[start]! & 0x80) !== 0 ? 1 : 0;
  const len = magnitude.length - start + pad;
  const out = Buffer.allocUnsafe(1 + lengthSize(len) + len);
  out[0] = TAG.INTEGER;
  let off = writeLength(out, 1, len);
  if (pad) out[off++] = 0;
  magnitude.copy(out, off, start);
  return out;
}

const OID_SYNTAX = /^[0-2](\.(0|[1-9]\d*))+$/;

/** One arc, base-128 big-endian with the continuation bit on all but the last octet (X.690 §8.19.2). */
function pushArc(arc: number | bigint, out: number[]): void {
  const start = out.length;
  if (typeof arc === 'number') {
    out.push(arc % 128);
    for (let a = Math.floor(arc / 128); a > 0; a = Math.floor(a / 128)) out.push((a % 128) | 0x80);
  } else {
    out.push(Number(arc & 0x7fn));
    for (let a = arc >> 7n; a > 0n; a >>= 7n) out.push(Number(a & 0x7fn) | 0x80);
  }
  // Written least significant first; reverse this arc's octets in place.
  for (let i = start, j = out.length - 1; i < j; i++, j--) [out[i], out[j]] = [out[j]!, out[i]!];
}

/**
 * OBJECT IDENTIFIER from dotted form (X.690 §8.19): first two arcs folded into 40*a+b, then each
 * arc base-128 with the continuation bit. Arcs are Numbers while they are exact (≤ 2^53 − 1) and
 * BigInts beyond (2.25.<UUID> arcs are 128-bit). Not memoised: measured at ~0.4 µs per call,
 * two calls per issued SVID against ~40–100 µs for the SVID (its ECDSA signature dominates).
 */
/**
 * The DER of an OBJECT IDENTIFIER. The OIDs Sigil writes on every certificate (./oids.ts) are
 * encoded once, at load, into a constant table: measured on the `issue` bench, encoding them per
 * certificate cost ~4% of issuance (0.74 vs 0.77 of raw sign speed).
 */
export function oid(dotted: string): Buffer {
  const known = KNOWN_OIDS.get(dotted);
  // A copy: a shared Buffer would be mutable state any caller could corrupt (~40 ns, a tenth of encoding).
  return known ? Buffer.from(known) : encodeOid(dotted);
}

function encodeOid(dotted: string): Buffer {
  if (!OID_SYNTAX.test(dotted)) throw new RangeError(`invalid OID "${dotted}"`);
  const arcs = dotted.split('.').map((a): number | bigint => (a.length < 16 ? Number(a) : BigInt(a)));
  const first = arcs[0] as number; // 0, 1 or 2 (the syntax check)
  const second = arcs[1]!;
  if (first < 2 && second >= 40) throw new RangeError(`invalid OID "${dotted}": second arc must be < 40`);
  const content: number[] = [];
  const folded =
    typeof second === 'number' && Number.isSafeInteger(first * 40 + second)
      ? first * 40 + second
      : BigInt(first) * 40n + BigInt(second);
  pushArc(folded, content);
  for (let i = 2; i < arcs.length; i++) pushArc(arcs[i]!, content);
  return tlv(TAG.OID, Buffer.from(content));
}

export function utf8String(s: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
}

/** PrintableString character set, X.680 §41.4 Table 10. */
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function printableString(s: string): Buffer {
  if (!PRINTABLE.test(s)) throw new RangeError(`"${s}" has characters outside PrintableString`);
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'latin1'));
}

export function ia5String(s: string): Buffer {
  // IA5 is 7-bit ASCII (X.680 §41.4). URIs and DNS names in SANs use it (RFC 5280 §4.2.1.6).
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) throw new RangeError(`"${s}" has characters outside IA5String`);
  }
  return tlv(TAG.IA5_STRING, Buffer.from(s, 'latin1'));
}

/** BIT STRING; the first content octet is the count of unused bits in the last octet (§8.6.2). */
export function bitString(content: Buffer, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (unusedBits > 0 && content.length === 0)) {
    throw new RangeError(`invalid unused-bit count ${unusedBits}`);
  }
  const len = content.length + 1;
  const out = Buffer.allocUnsafe(1 + lengthSize(len) + len);
  out[0] = TAG.BIT_STRING;
  const off = writeLength(out, 1, len);
  out[off] = unusedBits;
  content.copy(out, off + 1);
  return out;
}

/**
 * A named-bit BIT STRING (KeyUsage, X.690 §11.2.2): bit 0 is the most significant bit of the
 * first octet, and DER drops trailing zero bits, so the unused-bit count follows the highest set bit.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const content = Buffer.alloc((highest >> 3) + 1);
  for (const b of bits) content[b >> 3]! |= 0x80 >> (b & 7);
  return bitString(content, 7 - (highest & 7));
}

export function octetString(content: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, content);
}

const TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]); // DER: TRUE is 0xFF (§11.1)
const FALSE = Buffer.from([TAG.BOOLEAN, 1, 0x00]);
export function boolean(v: boolean): Buffer {
  return v ? TRUE : FALSE;
}

const NULL = Buffer.from([TAG.NULL, 0]);
export function nullValue(): Buffer {
  return NULL;
}

/** [n] EXPLICIT: a constructed context tag wrapping the complete inner TLV(s). */
export function explicit(n: number, ...inner: Buffer[]): Buffer {
  return constructed(0xa0 | contextNumber(n), inner);
}

/**
 * [n] IMPLICIT: the context tag replaces the inner type's tag, so `content` is the raw content
 * octets of the underlying type (e.g. the IA5 bytes of a URI for GeneralName [6]).
 */
export function implicit(n: number, content: Buffer, isConstructed = false): Buffer {
  return tlv((isConstructed ? 0xa0 : 0x80) | contextNumber(n), content);
}

function contextNumber(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`context tag [${n}] out of range`);
  return n;
}

function put2(out: Buffer, off: number, v: number): void {
  out[off] = 0x30 + ((v / 10) | 0);
  out[off + 1] = 0x30 + (v % 10);
}

/**
 * RFC 5280 §4.1.2.5 Time: UTCTime (YYMMDDHHMMSSZ) for years 1950..2049, GeneralizedTime
 * (YYYYMMDDHHMMSSZ) otherwise; always UTC, always with seconds, never fractional seconds
 * (milliseconds are truncated). Written digit by digit: this runs twice per certificate.
 */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('invalid Date');
  const year = date.getUTCFullYear();
  if (year < 0 || year > 9999) throw new RangeError(`year ${year} cannot be encoded`);
  const utc = year >= 1950 && year < 2050;
  const len = utc ? 13 : 15;
  const out = Buffer.allocUnsafe(2 + len);
  out[0] = utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
  out[1] = len;
  let off = 2;
  if (!utc) {
    put2(out, off, (year / 100) | 0);
    off += 2;
  }
  put2(out, off, year % 100);
  put2(out, off + 2, date.getUTCMonth() + 1);
  put2(out, off + 4, date.getUTCDate());
  put2(out, off + 6, date.getUTCHours());
  put2(out, off + 8, date.getUTCMinutes());
  put2(out, off + 10, date.getUTCSeconds());
  out[off + 12] = 0x5a; // 'Z'
  return out;
}

/** Encodings of ./oids.ts, made once (see oid()); never handed out, only copies of them. */
const KNOWN_OIDS: ReadonlyMap<string, Buffer> = new Map(Object.values(OID).map((o) => [o, encodeOid(o)]));

/** The same OIDs by their content octets (latin1), for the reader (knownOidName). */
const KNOWN_OID_NAMES: ReadonlyMap<string, string> = new Map(
  [...KNOWN_OIDS].map(([dotted, der]) => [
    der.subarray(der[1]! < 0x80 ? 2 : 2 + (der[1]! & 0x7f)).toString('latin1'),
    dotted,
  ]),
);

/**
 * The dotted form of an OID whose content octets are exactly one of ./oids.ts (issue #14: the
 * reader meets the same dozen OIDs in every CSR and certificate; decoding each again allocated
 * a few KB per renewal). Undefined for any other content: the caller decodes it.
 */
export function knownOidName(content: Buffer): string | undefined {
  return content.length < 128 ? KNOWN_OID_NAMES.get(content.toString('latin1')) : undefined;
}
