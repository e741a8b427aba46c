/** PEM, Names, serials and SPIFFE ID syntax: the small encodings around certificates. */
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { ipToBytes, bytesToIp } from '../../../src/pki/ip.js';
import { encodeName, issuerNameDer, subjectNameDer } from '../../../src/pki/name.js';
import { fromPem, parsePem, pemToDers, toPem } from '../../../src/pki/pem.js';
import { randomSerial, serialHex } from '../../../src/pki/serial.js';
import { parseSpiffeId } from '../../../src/pki/spiffe-id.js';
import { codeOf, hierarchy, openssl, withTempDir } from './helpers.js';

describe('PEM (RFC 7468)', () => {
  const der = Buffer.from(Array.from({ length: 100 }, (_, i) => i));

  it('writes 64-column base64 and reads it back', () => {
    const pem = toPem('CERTIFICATE', der);
    expect(pem.split('\n')[1]).toHaveLength(64);
    expect(pem.endsWith('-----END CERTIFICATE-----\n')).toBe(true);
    expect(fromPem(pem)).toEqual(der);
    expect(fromPem(pem, 'CERTIFICATE')).toEqual(der);
  });

  it('reads every block of a bundle, filtering by label, ignoring text around blocks', () => {
    const text = `Certificate:\n  junk\n${toPem('CERTIFICATE', der)}${toPem('PRIVATE KEY', Buffer.from('k'))}\r\n${toPem('CERTIFICATE', Buffer.from([1, 2, 3]))}`;
    expect(pemToDers(text, 'CERTIFICATE')).toEqual([der, Buffer.from([1, 2, 3])]);
    expect(pemToDers(text)).toHaveLength(3);
    expect(parsePem(text).map((b) => b.label)).toEqual(['CERTIFICATE', 'PRIVATE KEY', 'CERTIFICATE']);
    expect(codeOf(() => fromPem(text, 'CERTIFICATE'))).toBe('bad_certificate');
  });

  it('throws bad_certificate (or the given code) on garbage', () => {
    expect(codeOf(() => pemToDers('hello'))).toBe('bad_certificate');
    expect(codeOf(() => pemToDers('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'))).toBe(
      'bad_certificate',
    );
    expect(codeOf(() => pemToDers('-----BEGIN CERTIFICATE-----\nAAAA\n-----END X509 CRL-----\n'))).toBe(
      'bad_certificate',
    );
    expect(codeOf(() => pemToDers('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'))).toBe('bad_certificate');
    expect(codeOf(() => pemToDers(toPem('CERTIFICATE', der), 'X509 CRL', 'bad_csr'))).toBe('bad_csr');
    expect(() => pemToDers('nothing here')).toThrow(SigilError);
  });
});

describe('Names (RFC 5280 §4.1.2.4)', () => {
  it('encodes attributes in order, UTF8String except C and serialNumber', () => {
    const der = encodeName([
      ['C', 'DE'],
      ['O', 'Acme GmbH'],
      ['OU', 'Edge'],
      ['CN', 'gw-7 ü'],
      ['serialNumber', 'SN-1'],
    ]);
    const text = openssl(['asn1parse', '-inform', 'DER'], der);
    expect(text.indexOf('countryName')).toBeLessThan(text.indexOf('commonName'));
    expect(text).toContain('PRINTABLESTRING   :DE');
    expect(text).toContain('UTF8STRING        :Acme GmbH');
    expect(text).toContain('PRINTABLESTRING   :SN-1');
  });

  it('empty list is the empty Name', () => {
    expect(encodeName([]).toString('hex')).toBe('3000');
  });

  it('refuses bad attributes as TypeError', () => {
    expect(() => encodeName([['C', 'Germany']])).toThrow(TypeError);
    expect(() => encodeName([['CN', '']])).toThrow(TypeError);
    expect(() => encodeName([['CN', 'x'.repeat(65)]])).toThrow(TypeError);
    expect(() => encodeName([['serialNumber', 'a*b']])).toThrow(TypeError);
    expect(() => encodeName([['XX' as 'CN', 'x']])).toThrow(TypeError);
  });

  it('extracts subject and issuer Name DER byte-exact from a certificate', () => {
    const { root, inter } = hierarchy();
    expect(issuerNameDer(inter.certDer)).toEqual(subjectNameDer(root.certDer));
    expect(subjectNameDer(root.certDer)).toEqual(
      encodeName([
        ['O', 'Sigil'],
        ['CN', 'example.org root CA'],
      ]),
    );
    expect(codeOf(() => subjectNameDer(Buffer.from('nope')))).toBe('bad_certificate');
  });
});

describe('serials (RFC 5280 §4.1.2.2)', () => {
  it('randomSerial: 16 octets, positive, first octet non-zero, distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const s = randomSerial();
      expect(s).toHaveLength(16);
      expect(s[0]! & 0x80).toBe(0);
      expect(s[0]).not.toBe(0);
      seen.add(s.toString('hex'));
    }
    expect(seen.size).toBe(2000);
  });

  it('serialHex: lowercase, two digits per octet, no leading zero octets', () => {
    expect(serialHex(Buffer.from('00000a1b', 'hex'))).toBe('0a1b');
    expect(serialHex(Buffer.from('0080', 'hex'))).toBe('80');
    expect(serialHex(Buffer.from('00', 'hex'))).toBe('00');
    expect(serialHex(Buffer.from('7FAB', 'hex'))).toBe('7fab');
  });

  it('serialHex equals `openssl x509 -serial` lowercased and node X509Certificate.serialNumber', () => {
    const { inter } = hierarchy();
    const out = withTempDir((_dir, write) =>
      openssl(['x509', '-noout', '-serial', '-in', write('c.pem', toPem('CERTIFICATE', inter.certDer))]),
    );
    const fromOpenssl = out
      .trim()
      .replace(/^serial=/, '')
      .toLowerCase();
    expect(fromOpenssl).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(new X509Certificate(inter.certDer).serialNumber.toLowerCase()).toBe(fromOpenssl);
  });
});

describe('SPIFFE IDs (SPIFFE-ID spec §2)', () => {
  it.each([
    ['spiffe://example.org', { trustDomain: 'example.org', path: '' }],
    ['spiffe://example.org/bot/edge-7', { trustDomain: 'example.org', path: '/bot/edge-7' }],
    ['spiffe://a_b-c.d/X.y_z-1', { trustDomain: 'a_b-c.d', path: '/X.y_z-1' }],
  ])('accepts %s', (id, want) => {
    expect(parseSpiffeId(id)).toEqual(want);
  });

  it.each([
    'https://example.org/x',
    'spiffe://Example.org/x',
    'spiffe:///x',
    'spiffe://example.org/',
    'spiffe://example.org//x',
    'spiffe://example.org/./x',
    'spiffe://example.org/../x',
    'spiffe://example.org/a%20b',
    'spiffe://example.org:8080/x',
    'spiffe://user@example.org/x',
    'spiffe://example.org/x?q=1',
    'spiffe://example.org/x#f',
    `spiffe://example.org/${'a'.repeat(2040)}`,
  ])('refuses %s', (id) => {
    expect(codeOf(() => parseSpiffeId(id))).toBe('bad_request');
  });
});

describe('IP addresses for iPAddress SANs', () => {
  it.each([
    ['10.1.2.3', '0a010203'],
    ['::1', '00000000000000000000000000000001'],
    ['2001:db8::8:800:200c:417a', '20010db80000000000080800200c417a'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['fe80::', 'fe800000000000000000000000000000'],
  ])('%s', (text, want) => {
    expect(ipToBytes(text)?.toString('hex')).toBe(want);
  });

  it('refuses non-addresses and zone IDs; formats back', () => {
    expect(ipToBytes('example.org')).toBeUndefined();
    expect(ipToBytes('fe80::1%eth0')).toBeUndefined();
    expect(ipToBytes('1.2.3.256')).toBeUndefined();
    expect(bytesToIp(Buffer.from([10, 0, 0, 1]))).toBe('10.0.0.1');
    expect(bytesToIp(ipToBytes('::1')!)).toBe('0:0:0:0:0:0:0:1');
  });
});
