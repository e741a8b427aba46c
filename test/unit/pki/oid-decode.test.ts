/**
 * DerReader.oid decodes arcs of up to 7 octets with plain numbers and longer ones with BigInt
 * (issue #14: BigInt for every octet was one of a renewal's larger allocators). The result must be
 * the same string for every encoding, at and around the 7-octet switch, and every malformed
 * encoding still refused: compared here with the BigInt-only decoder it replaced.
 */
import { describe, expect, it } from 'vitest';
import { oid } from '../../../src/pki/der.js';
import { DerReader } from '../../../src/pki/der-reader.js';

/** The decoder before issue #14, kept as the reference (BigInt for every octet). */
function reference(c: Buffer): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const byte of c) {
    v = (v << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(v);
      v = 0n;
    }
  }
  const first = arcs[0]!;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

const tlv = (content: Buffer): Buffer => Buffer.concat([Buffer.from([0x06, content.length]), content]);
const read = (content: Buffer): string => {
  const r = new DerReader(tlv(content), 'bad_request', 'oid');
  return r.oid(r.root());
};

/** A minimal base-128 arc of exactly `octets` octets, top octet `top` (1..0x7f). */
function arc(octets: number, top: number, fill: number): number[] {
  const out = [0x80 | top];
  for (let i = 1; i < octets - 1; i++) out.push(0x80 | fill);
  if (octets > 1) out.push(fill & 0x7f);
  return octets === 1 ? [top & 0x7f] : out;
}

describe('DerReader.oid', () => {
  it('decodes like the BigInt decoder for arcs of 1 to 20 octets, first arc included', () => {
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n) + 1;
    for (let first = 1; first <= 20; first++)
      for (let second = 1; second <= 20; second++)
        for (let k = 0; k < 3; k++) {
          const c = Buffer.from([...arc(first, rnd(0x7f), rnd(0x7f)), ...arc(second, rnd(0x7f), rnd(0x7f))]);
          expect(read(c)).toBe(reference(c));
        }
    for (const dotted of [
      '1.2.840.10045.4.3.2',
      '2.5.29.17',
      '0.9.2342.19200300.100.1.1',
      '2.999.3',
      '1.39.562949953421311',
    ])
      expect(read(oid(dotted).subarray(2))).toBe(dotted);
  });

  it('still refuses a non-minimal arc, a truncated OID and an arc longer than 20 octets', () => {
    expect(() => read(Buffer.from([0x2a, 0x80, 0x01]))).toThrow(/non-minimal/);
    expect(() => read(Buffer.from([0x2a, 0x86]))).toThrow(/malformed/);
    expect(() => read(Buffer.from([0x2a, ...arc(21, 1, 1)]))).toThrow(/longer than 20 octets/);
    expect(read(Buffer.from([0x2a, ...arc(20, 1, 1)]))).toBe(reference(Buffer.from([0x2a, ...arc(20, 1, 1)])));
  });
});

describe('DerReader.oid, the OIDs Sigil knows', () => {
  it('reads each of them from the table as the decoder would, and one octet off is decoded', async () => {
    const { OID } = await import('../../../src/pki/oids.js');
    for (const dotted of Object.values(OID)) {
      const c = oid(dotted).subarray(2);
      expect(read(c)).toBe(dotted);
      expect(read(c)).toBe(reference(c));
      const off = Buffer.from(c);
      off[off.length - 1] = (off[off.length - 1]! + 1) & 0x7f;
      expect(read(off)).toBe(reference(off));
    }
  });
});
