/**
 * A strict, non-recursive DER reader (X.690 §8, §10) for the few structures Sigil parses by hand:
 * CSRs, certificate fields and extensions. It works on offsets into the original Buffer, so a
 * signature can be checked over the *exact* bytes that were signed (RFC 2986 §4.2, RFC 5280
 * §4.1.1.3) — re-encoding a parsed structure is how verifiers get fooled by BER leniency.
 *
 * Every failure is a SigilError with the code and subject ("CSR", "certificate") the caller
 * chose, and the message says what was wrong and where.
 */
import { SigilError, type ErrorCode } from '../errors.js';
import { knownOidName, TAG } from './der.js';

/** Octets one OID arc may take (see {@link DerReader.oid}). */
const MAX_OID_ARC_OCTETS = 20;

export interface DerNode {
  /** The identifier octet (class, constructed bit and tag number). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

export class DerReader {
  constructor(
    readonly buf: Buffer,
    private readonly code: ErrorCode,
    private readonly what: string,
  ) {}

  fail(detail: string): never {
    throw new SigilError(this.code, `${this.what}: ${detail}`);
  }

  /** The single TLV that must span the whole buffer (no trailing bytes). */
  root(): DerNode {
    const n = this.node(0, this.buf.length);
    if (n.end !== this.buf.length) this.fail(`${this.buf.length - n.end} trailing bytes after the DER value`);
    return n;
  }

  /** Read one TLV header at `offset`; its content must end by `limit`. */
  node(offset: number, limit: number): DerNode {
    const b = this.buf;
    if (offset + 2 > limit) this.fail(`truncated DER at offset ${offset}`);
    const tag = b[offset]!;
    if ((tag & 0x1f) === 0x1f) this.fail(`unsupported high tag number at offset ${offset}`);
    let len = b[offset + 1]!;
    let p = offset + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      // 0x80 is BER's indefinite length, forbidden in DER (§10.1); 4 length octets are plenty.
      if (n === 0) this.fail(`indefinite length at offset ${offset} (not DER)`);
      if (n > 4) this.fail(`length of ${n} octets at offset ${offset} is too large`);
      if (p + n > limit) this.fail(`truncated length at offset ${offset}`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[p + i]!;
      // DER: the shortest form (§10.1) — no leading zero octet, no long form under 128.
      if (b[p] === 0 || len < 0x80) this.fail(`non-minimal length encoding at offset ${offset} (not DER)`);
      p += n;
    }
    if (p + len > limit) this.fail(`value at offset ${offset} runs past its container (${len} bytes declared)`);
    return { tag, start: offset, contentStart: p, end: p + len };
  }

  /** Direct children of a constructed node. */
  children(parent: DerNode): DerNode[] {
    if ((parent.tag & 0x20) === 0) this.fail(`expected a constructed value at offset ${parent.start}`);
    const out: DerNode[] = [];
    for (let off = parent.contentStart; off < parent.end;) {
      const c = this.node(off, parent.end);
      out.push(c);
      off = c.end;
    }
    return out;
  }

  /** Assert the tag of a node, naming the field when it is wrong. */
  expect(n: DerNode | undefined, tag: number, field: string): DerNode {
    if (n === undefined) this.fail(`missing ${field}`);
    if (n.tag !== tag)
      this.fail(`${field}: expected tag 0x${tag.toString(16)}, found 0x${n.tag.toString(16)} at offset ${n.start}`);
    return n;
  }

  /** The complete TLV bytes (shares memory with the input). */
  bytes(n: DerNode): Buffer {
    return this.buf.subarray(n.start, n.end);
  }

  content(n: DerNode): Buffer {
    return this.buf.subarray(n.contentStart, n.end);
  }

  /** OBJECT IDENTIFIER to dotted form (§8.19). */
  oid(n: DerNode, field = 'OBJECT IDENTIFIER'): string {
    this.expect(n, TAG.OID, field);
    const c = this.content(n);
    if (c.length === 0 || (c[c.length - 1]! & 0x80) !== 0) this.fail(`${field}: malformed OID`);
    // One of the OIDs Sigil knows, byte for byte: a minimal encoding of that very OID, so the
    // decoding below could only come to the same string.
    const known = knownOidName(c);
    if (known !== undefined) return known;
    // Arcs of up to 7 octets (49 bits) are summed as plain numbers, exactly; only a longer one
    // (a 2.25 UUID arc) switches to BigInt. Issue #14: BigInt for every octet made OID decoding
    // one of the larger allocators of a renewal (~8 KB per renewal, mostly short-lived BigInts).
    const arcs: Array<number | bigint> = [];
    let v = 0;
    let big: bigint | undefined;
    let arcOctets = 0;
    for (let i = 0; i < c.length; i++) {
      const byte = c[i]!;
      if (arcOctets === 0 && byte === 0x80) this.fail(`${field}: non-minimal OID arc`);
      // X.690 §8.19.2 sets no bound, but one arc of thousands of octets makes this loop and the
      // decimal conversion quadratic (a 48 KB arc in a request costs ~150 ms). 20 octets hold
      // 140 bits: the 128-bit UUID arcs of 2.25 (X.667) are the largest in real use.
      if (++arcOctets > MAX_OID_ARC_OCTETS) this.fail(`${field}: OID arc longer than ${MAX_OID_ARC_OCTETS} octets`);
      if (big === undefined && arcOctets <= 7) v = v * 128 + (byte & 0x7f);
      else big = ((big ?? BigInt(v)) << 7n) | BigInt(byte & 0x7f);
      if ((byte & 0x80) === 0) {
        arcs.push(big ?? v);
        v = 0;
        big = undefined;
        arcOctets = 0;
      }
    }
    const first = arcs[0]!;
    const head =
      typeof first === 'bigint'
        ? first < 80n
          ? [first / 40n, first % 40n]
          : [2n, first - 80n]
        : first < 80
          ? [Math.floor(first / 40), first % 40]
          : [2, first - 80];
    return [...head, ...arcs.slice(1)].join('.');
  }

  boolean(n: DerNode, field = 'BOOLEAN'): boolean {
    this.expect(n, TAG.BOOLEAN, field);
    const c = this.content(n);
    // DER: exactly one octet, 0x00 or 0xFF (§11.1).
    if (c.length !== 1 || (c[0] !== 0 && c[0] !== 0xff)) this.fail(`${field}: not a DER BOOLEAN`);
    return c[0] === 0xff;
  }

  /** Minimal two's-complement check (§8.3.2) and the content octets. */
  integerBytes(n: DerNode, field = 'INTEGER'): Buffer {
    this.expect(n, TAG.INTEGER, field);
    const c = this.content(n);
    if (c.length === 0) this.fail(`${field}: empty INTEGER`);
    if (c.length > 1 && ((c[0] === 0 && (c[1]! & 0x80) === 0) || (c[0] === 0xff && (c[1]! & 0x80) !== 0))) {
      this.fail(`${field}: non-minimal INTEGER encoding`);
    }
    return c;
  }

  /** A small non-negative INTEGER (versions, path lengths). */
  smallInteger(n: DerNode, field = 'INTEGER'): number {
    const c = this.integerBytes(n, field);
    if ((c[0]! & 0x80) !== 0 || c.length > 4) this.fail(`${field}: out of range`);
    return c.readUIntBE(0, c.length);
  }

  bitString(n: DerNode, field = 'BIT STRING'): { unusedBits: number; bytes: Buffer } {
    this.expect(n, TAG.BIT_STRING, field);
    const c = this.content(n);
    if (c.length === 0 || c[0]! > 7 || (c.length === 1 && c[0] !== 0)) this.fail(`${field}: malformed BIT STRING`);
    return { unusedBits: c[0]!, bytes: c.subarray(1) };
  }

  /** UTCTime or GeneralizedTime in the restricted RFC 5280 §4.1.2.5 forms. */
  time(n: DerNode, field = 'Time'): Date {
    const s = this.content(n).toString('latin1');
    let m: RegExpExecArray | null;
    let year: number;
    if (n.tag === TAG.UTC_TIME && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
      const yy = Number(m[1]);
      year = yy >= 50 ? 1900 + yy : 2000 + yy; // §4.1.2.5.1
    } else if (n.tag === TAG.GENERALIZED_TIME && (m = /^(\d\d\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
      year = Number(m[1]);
    } else {
      this.fail(`${field}: not an RFC 5280 UTCTime/GeneralizedTime ("${s.slice(0, 20)}")`);
    }
    const [mo, d, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
    const back = new Date(0);
    back.setUTCFullYear(year, mo - 1, d); // not Date.UTC, which maps years 0..99 to 19xx
    back.setUTCHours(h, mi, se, 0);
    if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) {
      this.fail(`${field}: invalid date "${s}"`);
    }
    return back;
  }
}
