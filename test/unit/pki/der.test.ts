import { describe, expect, it } from 'vitest';
import {
  bitString,
  boolean,
  encodeLength,
  explicit,
  ia5String,
  implicit,
  integer,
  namedBits,
  nullValue,
  octetString,
  oid,
  printableString,
  sequence,
  set,
  time,
  tlv,
  utf8String,
} from '../../../src/pki/der.js';
import { DerReader } from '../../../src/pki/der-reader.js';
import { codeOf, openssl } from './helpers.js';

const hex = (b: Buffer): string => b.toString('hex');
const h = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('der.integer (X.690 §8.3)', () => {
  it.each([
    [0, '020100'],
    [1, '020101'],
    [127, '02017f'],
    [128, '02020080'],
    [255, '020200ff'],
    [256, '02020100'],
    [65535, '020300ffff'],
    [-1, '0201ff'],
    [-128, '020180'],
    [-129, '0202ff7f'],
    [-256, '0202ff00'],
  ])('number %d → %s', (n, want) => {
    expect(hex(integer(n))).toBe(want);
  });

  it('bigint beyond 64 bits', () => {
    expect(hex(integer(2n ** 64n))).toBe('0209010000000000000000');
    expect(hex(integer(-(2n ** 63n)))).toBe('02088000000000000000');
  });

  it('unsigned Buffers: strips leading zeros, pads a high bit so the value stays positive', () => {
    expect(hex(integer(h('80')))).toBe('02020080');
    expect(hex(integer(h('ff ff')))).toBe('020300ffff');
    expect(hex(integer(h('00 00 01')))).toBe('020101');
    expect(hex(integer(h('00 80')))).toBe('02020080');
    expect(hex(integer(h('00 00')))).toBe('020100');
    expect(hex(integer(Buffer.alloc(0)))).toBe('020100');
    const serial = h('7f'.padEnd(40, 'a'));
    expect(hex(integer(serial))).toBe('0214' + serial.toString('hex'));
  });

  it('refuses unsafe numbers', () => {
    expect(() => integer(2 ** 60)).toThrow(RangeError);
    expect(() => integer(1.5)).toThrow(RangeError);
  });
});

describe('lengths (X.690 §8.1.3, §10.1)', () => {
  it.each([
    [0, '00'],
    [127, '7f'],
    [128, '8180'],
    [255, '81ff'],
    [256, '820100'],
    [65535, '82ffff'],
    [65536, '83010000'],
    [16777216, '8401000000'],
  ])('%d → %s', (n, want) => {
    expect(hex(encodeLength(n))).toBe(want);
  });

  it('tlv and sequence use long form for big contents', () => {
    const c = Buffer.alloc(200, 0xab);
    expect(hex(tlv(0x04, c).subarray(0, 3))).toBe('0481c8');
    expect(tlv(0x04, c).length).toBe(203);
    const big = sequence(octetString(Buffer.alloc(70000)));
    expect(hex(big.subarray(0, 10))).toBe('3083011175' + '0483011170'); // 70000 + 5 header octets
  });

  it('refuses high tag numbers', () => {
    expect(() => tlv(0x1f, Buffer.alloc(0))).toThrow(RangeError);
  });
});

describe('der.oid (X.690 §8.19)', () => {
  it.each([
    ['1.2.840.113549', '06062a864886f70d'],
    ['2.5.29.17', '0603551d11'],
    ['1.2.840.10045.3.1.7', '06082a8648ce3d030107'],
    ['1.3.132.0.34', '06052b81040022'],
    ['2.999.3', '0603883703'], // X.690 §8.19.5 example
    ['0.0', '060100'],
  ])('%s', (dotted, want) => {
    expect(hex(oid(dotted))).toBe(want);
    const r = new DerReader(oid(dotted), 'bad_request', 'oid');
    expect(r.oid(r.root())).toBe(dotted);
  });

  it('arcs beyond 2^53 (UUID OIDs, X.667) round-trip', () => {
    const dotted = '2.25.329800735698586629295641978511506172918';
    const r = new DerReader(oid(dotted), 'bad_request', 'oid');
    expect(r.oid(r.root())).toBe(dotted);
  });

  it('returns a fresh Buffer each time (no shared memo a caller could corrupt)', () => {
    const a = oid('1.3.6.1.5.5.7.3.1');
    a[2] = 0;
    expect(hex(oid('1.3.6.1.5.5.7.3.1'))).toBe('06082b06010505070301');
  });

  it('arcs beyond 2^53 (2.25.<UUID>) encode through BigInt, those below through Number: the same bytes', () => {
    const uuid = '2.25.329800735698586629295641978511506172918';
    const r = new DerReader(oid(uuid), 'bad_request', 'oid');
    expect(r.oid(r.root())).toBe(uuid);
    expect(hex(oid('1.2.9007199254740991'))).toBe('06092a8fffffffffffff7f');
  });

  it.each(['1', '3.1', '1.40', '1.2.', '1..2', 'a.b', '1.02'])('refuses "%s"', (bad) => {
    expect(() => oid(bad)).toThrow(RangeError);
  });
});

describe('der.time (RFC 5280 §4.1.2.5)', () => {
  const t = (b: Buffer): string => `${b[0]!.toString(16)} ${b.subarray(2).toString('latin1')}`;
  it('UTCTime up to 2049, GeneralizedTime from 2050, milliseconds dropped', () => {
    expect(t(time(new Date('2049-12-31T23:59:59.999Z')))).toBe('17 491231235959Z');
    expect(t(time(new Date('2050-01-01T00:00:00Z')))).toBe('18 20500101000000Z');
    expect(t(time(new Date('2026-03-04T05:06:07Z')))).toBe('17 260304050607Z');
    expect(t(time(new Date('1950-01-01T00:00:00Z')))).toBe('17 500101000000Z');
    expect(t(time(new Date('1949-12-31T23:59:59Z')))).toBe('18 19491231235959Z');
    expect(t(time(new Date('9999-12-31T23:59:59Z')))).toBe('18 99991231235959Z'); // §4.1.2.5 "no expiry"
    expect(time(new Date('2030-01-01T00:00:00Z'))[1]).toBe(13);
  });

  it('round-trips through the reader', () => {
    for (const iso of ['2049-12-31T23:59:59.000Z', '2050-01-01T00:00:00.000Z', '1999-02-28T12:00:00.000Z']) {
      const r = new DerReader(time(new Date(iso)), 'bad_certificate', 'time');
      expect(r.time(r.root()).toISOString()).toBe(iso);
    }
  });

  it('refuses invalid dates', () => {
    expect(() => time(new Date(NaN))).toThrow(RangeError);
  });
});

describe('strings, bits and tags', () => {
  it('string types', () => {
    expect(hex(utf8String('é'))).toBe('0c02c3a9');
    expect(hex(printableString('US'))).toBe('13025553');
    expect(hex(ia5String('a.b'))).toBe('1603612e62');
    expect(() => printableString('a*b')).toThrow(RangeError);
    expect(() => ia5String('é')).toThrow(RangeError);
  });

  it('BIT STRING and named bits (X.690 §11.2.2: trailing zero bits dropped)', () => {
    expect(hex(bitString(h('0102')))).toBe('0303000102');
    expect(hex(bitString(Buffer.alloc(0)))).toBe('030100');
    expect(hex(namedBits([0]))).toBe('03020780'); // digitalSignature
    expect(hex(namedBits([0, 2]))).toBe('030205a0'); // + keyEncipherment
    expect(hex(namedBits([5, 6]))).toBe('03020106'); // keyCertSign + cRLSign
    expect(hex(namedBits([8]))).toBe('0303070080'); // decipherOnly
    expect(() => bitString(Buffer.alloc(0), 3)).toThrow(RangeError);
  });

  it('BOOLEAN, NULL, OCTET STRING, context tags, SET ordering', () => {
    expect(hex(boolean(true))).toBe('0101ff');
    expect(hex(boolean(false))).toBe('010100');
    expect(hex(nullValue())).toBe('0500');
    expect(hex(octetString(h('aabb')))).toBe('0402aabb');
    expect(hex(explicit(0, integer(2)))).toBe('a003020102');
    expect(hex(explicit(3, sequence()))).toBe('a3023000');
    expect(hex(implicit(6, Buffer.from('abc')))).toBe('8603616263');
    expect(hex(implicit(0, Buffer.alloc(0), true))).toBe('a000');
    expect(hex(set(integer(2), integer(1)))).toBe('3106020101020102');
    expect(() => implicit(31, Buffer.alloc(0))).toThrow(RangeError);
  });

  it('openssl asn1parse reads a composite value the same way', () => {
    const der = sequence(integer(128), oid('2.5.29.17'), time(new Date('2050-06-01T00:00:00Z')), utf8String('sigil'));
    const out = openssl(['asn1parse', '-inform', 'DER'], der);
    expect(out).toContain('INTEGER           :80');
    expect(out).toContain('X509v3 Subject Alternative Name');
    expect(out).toContain('GENERALIZEDTIME   :20500601000000Z');
    expect(out).toContain('UTF8STRING        :sigil');
  });
});

describe('DerReader strictness (X.690 §10)', () => {
  const read = (s: string): string => codeOf(() => new DerReader(h(s), 'bad_csr', 'test').root());
  it('refuses BER-only and malformed encodings with the given code', () => {
    expect(read('0481050102030405')).toBe('bad_csr'); // long form for a short length
    expect(read('3080020100 0000')).toBe('bad_csr'); // indefinite length
    expect(read('048200050102030405')).toBe('bad_csr'); // leading zero length octet
    expect(read('0405 0102')).toBe('bad_csr'); // truncated
    expect(read('020100 00')).toBe('bad_csr'); // trailing bytes
  });

  it('names what was wrong', () => {
    expect(() => new DerReader(h('3080'), 'bad_csr', 'CSR').root()).toThrow(/CSR: indefinite length/);
  });

  it('refuses non-minimal INTEGERs', () => {
    const r = new DerReader(h('02020001'), 'bad_certificate', 'x');
    expect(() => r.integerBytes(r.root())).toThrow(/non-minimal/);
  });
});
