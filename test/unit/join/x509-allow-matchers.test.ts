/**
 * Each matcher of an x509 join rule's allow list (join/x509/allow.ts), one at a time, on one
 * device certificate made for the purpose (@peculiar/x509): the field that matches lets the
 * device in, the same field with another value refuses it with `x509_not_allowed` and a message
 * that names the field, the value and the pattern. Attack: a device of a trusted CA that is not
 * one of the allowed ones (another CN, OU, serial, SAN) — the allow list is the only thing that
 * tells it from an allowed one. Also the apply-time schema (an empty entry would allow all).
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { parseCert, type ParsedCert } from '../../../src/join/x509-cert.js';
import { allowEntrySchema, checkAllowed, type AllowEntry } from '../../../src/join/x509/allow.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

async function device(o: {
  subject: x509.JsonName;
  serial: string;
  san?: x509.JsonGeneralNames;
  eku?: string[];
}): Promise<ParsedCert> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: o.serial,
    subject: new x509.Name(o.subject).toString(),
    issuer: 'CN=Factory CA, O=Acme',
    notBefore: new Date(Date.UTC(2026, 0, 1)),
    notAfter: new Date(Date.UTC(2027, 0, 1)),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      ...(o.san ? [new x509.SubjectAlternativeNameExtension(o.san)] : []),
      ...(o.eku ? [new x509.ExtendedKeyUsageExtension(o.eku)] : []),
    ],
  });
  return parseCert(Buffer.from(cert.rawData), 'device certificate');
}

let dev: ParsedCert; // every field set
let bare: ParsedCert; // CN only: no OU, serialNumber, SAN or EKU
let zeros: ParsedCert; // serial 100a: zeros inside the number
beforeAll(async () => {
  dev = await device({
    subject: [{ CN: ['gw-7'] }, { OU: ['Devices'] }, { O: ['Acme'] }, { '2.5.4.5': ['SN-0042'] }],
    serial: '00abc1',
    san: [
      { type: 'dns', value: 'Dev-7.Edge.Example.com' },
      { type: 'dns', value: 'gw-7.local' },
      { type: 'url', value: 'spiffe://factory.example/device/7' },
    ],
    eku: [CLIENT_AUTH, CODE_SIGNING],
  });
  bare = await device({ subject: [{ CN: ['bare-1'] }], serial: '01' });
  zeros = await device({ subject: [{ CN: ['zeros'] }], serial: '100a' });
});

function refusal(entries: AllowEntry[], leaf: ParsedCert = dev): string {
  try {
    checkAllowed(entries, leaf, 'factory');
  } catch (e) {
    if (!(e instanceof SigilError)) throw e;
    expect(e.code).toBe('x509_not_allowed');
    return e.message;
  }
  throw new Error('expected x509_not_allowed');
}
const allowed = (entries: AllowEntry[] | undefined, leaf: ParsedCert = dev): void =>
  expect(() => checkAllowed(entries, leaf, 'factory')).not.toThrow();
const prefix = (leaf: ParsedCert): string =>
  `device certificate (subject "${leaf === dev ? 'CN=gw-7, OU=Devices, O=Acme, serialNumber=SN-0042' : 'CN=bare-1'}") matches no allow entry of join_rule factory: `;

describe('checkAllowed, one matcher at a time', () => {
  it('no allow list, or an empty one, allows every certificate of the rule’s CAs', () => {
    allowed(undefined);
    allowed([]);
  });

  it('issuer: the DN as a set of attributes, in either order', () => {
    allowed([{ issuer: 'O=Acme, CN=Factory CA' }]);
    allowed([{ issuer: '/O=Acme/CN=Factory CA' }]);
    expect(refusal([{ issuer: 'CN=Factory CA, O=Evil' }])).toBe(
      `${prefix(dev)}issuer "CN=Factory CA, O=Acme" is not "CN=Factory CA, O=Evil"`,
    );
  });

  it('subject_cn', () => {
    allowed([{ subject_cn: 'gw-?' }]);
    // Stars that match nothing at the end, or several in a row, still match.
    allowed([{ subject_cn: 'gw-7*' }]);
    allowed([{ subject_cn: '**gw-7**' }]);
    expect(refusal([{ subject_cn: 'GW-*' }])).toBe(`${prefix(dev)}subject CN "gw-7" does not match "GW-*"`);
  });

  it('subject_ou, and a certificate without any OU', () => {
    allowed([{ subject_ou: 'Dev*' }]);
    expect(refusal([{ subject_ou: 'Servers' }])).toBe(`${prefix(dev)}subject OU "Devices" does not match "Servers"`);
    expect(refusal([{ subject_ou: '*' }], bare)).toBe(`${prefix(bare)}subject OU (none) does not match "*"`);
  });

  it('subject_serial_number (the X.520 serialNumber attribute, IEEE 802.1AR)', () => {
    allowed([{ subject_serial_number: 'SN-00*' }]);
    expect(refusal([{ subject_serial_number: 'SN-0043' }])).toBe(
      `${prefix(dev)}subject serialNumber "SN-0042" does not match "SN-0043"`,
    );
    expect(refusal([{ subject_serial_number: '*' }], bare)).toBe(
      `${prefix(bare)}subject serialNumber (none) does not match "*"`,
    );
  });

  it('san_dns: any DNS name, case-insensitive; URIs and CNs are not DNS names', () => {
    allowed([{ san_dns: '*.edge.example.com' }]);
    allowed([{ san_dns: 'GW-7.LOCAL' }]);
    expect(refusal([{ san_dns: '*.example.org' }])).toBe(
      `${prefix(dev)}SAN DNS "Dev-7.Edge.Example.com", "gw-7.local" does not match "*.example.org"`,
    );
    expect(refusal([{ san_dns: 'spiffe://factory.example/device/7' }])).toMatch(/SAN DNS .* does not match/);
    expect(refusal([{ san_dns: '*' }], bare)).toBe(`${prefix(bare)}SAN DNS (none) does not match "*"`);
  });

  it('san_uri: case-sensitive; DNS names are not URIs', () => {
    allowed([{ san_uri: 'spiffe://factory.example/device/*' }]);
    expect(refusal([{ san_uri: 'SPIFFE://factory.example/device/*' }])).toBe(
      `${prefix(dev)}SAN URI "spiffe://factory.example/device/7" does not match "SPIFFE://factory.example/device/*"`,
    );
    expect(refusal([{ san_uri: 'gw-7.local' }])).toMatch(/SAN URI "spiffe:\/\/factory\.example\/device\/7" does not/);
    expect(refusal([{ san_uri: '*' }], bare)).toBe(`${prefix(bare)}SAN URI (none) does not match "*"`);
  });

  it('serials: hex with or without 0x, colons, case and leading zeros', () => {
    for (const s of ['abc1', '00abc1', '0xABC1', '0XabC1', '00:AB:C1', '0x00:ab:c1']) allowed([{ serials: ['ff', s] }]);
    expect(refusal([{ serials: ['abc2', 'abc10', 'bc1'] }])).toBe(`${prefix(dev)}serial abc1 is not listed`);
    // Only leading zeros go: zeros inside the number are kept.
    allowed([{ serials: ['0x00:10:0A'] }], zeros);
    allowed([{ serials: ['100a'] }], zeros);
    allowed([{ serials: ['1'] }], bare);
    // A serial that is only zeros is 0, not the empty string.
    expect(refusal([{ serials: ['0x000'] }])).toBe(`${prefix(dev)}serial abc1 is not listed`);
  });

  it('eku: every purpose listed, by name or dotted OID; none when the extension is absent', () => {
    allowed([{ eku: ['clientAuth'] }]);
    allowed([{ eku: [CLIENT_AUTH, 'codeSigning'] }]);
    expect(refusal([{ eku: ['clientAuth', 'serverAuth'] }])).toBe(`${prefix(dev)}extended key usage lacks serverAuth`);
    expect(refusal([{ eku: ['1.3.6.1.5.5.7.3.9'] }])).toBe(`${prefix(dev)}extended key usage lacks 1.3.6.1.5.5.7.3.9`);
    expect(refusal([{ eku: ['clientAuth'] }], bare)).toBe(`${prefix(bare)}extended key usage lacks clientAuth`);
  });
});

describe('checkAllowed, entries and fields together', () => {
  it('an entry matches only when every field it gives matches (AND)', () => {
    allowed([
      { subject_cn: 'gw-7', subject_ou: 'Devices', san_dns: 'gw-7.local', serials: ['abc1'], eku: ['clientAuth'] },
    ]);
    expect(refusal([{ subject_cn: 'gw-7', subject_ou: 'Devices', serials: ['abc2'] }])).toBe(
      `${prefix(dev)}serial abc1 is not listed`,
    );
    expect(refusal([{ subject_cn: 'gw-7', eku: ['serverAuth'] }])).toBe(
      `${prefix(dev)}extended key usage lacks serverAuth`,
    );
    expect(refusal([{ issuer: 'CN=Other', subject_cn: 'gw-7' }])).toBe(
      `${prefix(dev)}issuer "CN=Factory CA, O=Acme" is not "CN=Other"`,
    );
  });

  it('the first failing field is the one named', () => {
    expect(refusal([{ subject_cn: 'x', subject_ou: 'y', san_uri: 'z' }])).toBe(
      `${prefix(dev)}subject CN "gw-7" does not match "x"`,
    );
    expect(refusal([{ subject_cn: 'gw-7', subject_ou: 'y', san_uri: 'z' }])).toBe(
      `${prefix(dev)}subject OU "Devices" does not match "y"`,
    );
  });

  it('any entry that matches allows (OR); a refusal names up to three entries’ reasons', () => {
    allowed([{ subject_cn: 'nope' }, { san_uri: 'spiffe://factory.example/*' }]);
    expect(refusal([{ subject_cn: 'a' }, { subject_cn: 'b' }])).toBe(
      `${prefix(dev)}subject CN "gw-7" does not match "a"; subject CN "gw-7" does not match "b"`,
    );
    expect(refusal([{ subject_cn: 'a' }, { subject_cn: 'b' }, { subject_cn: 'c' }])).toBe(
      `${prefix(dev)}subject CN "gw-7" does not match "a"; subject CN "gw-7" does not match "b"; subject CN "gw-7" does not match "c"`,
    );
    expect(refusal([{ subject_cn: 'a' }, { subject_cn: 'b' }, { subject_cn: 'c' }, { subject_cn: 'd' }])).toBe(
      `${prefix(dev)}subject CN "gw-7" does not match "a"; subject CN "gw-7" does not match "b"; subject CN "gw-7" does not match "c"; … (4 entries)`,
    );
  });
});

describe('allowEntrySchema (apply time)', () => {
  const issues = (v: unknown): Array<{ path: PropertyKey[]; message: string }> => {
    const r = allowEntrySchema.safeParse(v);
    return r.success ? [] : r.error.issues.map((i) => ({ path: i.path, message: i.message }));
  };

  it('accepts every field in its documented form', () => {
    expect(
      issues({
        issuer: 'CN=Factory CA, O=Acme',
        subject_cn: 'gw-*',
        subject_ou: 'Devices',
        subject_serial_number: 'SN-*',
        san_dns: '*.edge.example.com',
        san_uri: 'spiffe://x/*',
        serials: ['0xAB:CD', 'ff'],
        eku: ['clientAuth', 'OCSPSigning', '1.2.840.113549'],
      }),
    ).toEqual([]);
  });

  it('refuses an empty entry: it would allow every certificate', () => {
    expect(issues({})).toEqual([
      {
        path: [],
        message: 'an allow entry needs at least one field (leave allow out to allow every certificate the CAs issued)',
      },
    ]);
  });

  it('refuses an issuer that is not a DN, naming the field', () => {
    const got = issues({ issuer: 'Factory CA' });
    expect(got).toHaveLength(1);
    expect(got[0]!.path).toEqual(['issuer']);
  });

  it('refuses a key purpose that is neither a known name nor a dotted OID', () => {
    for (const bad of ['client auth', 'ClientAuth', '1', '1.', '.1.2', 'x1.2'])
      expect(issues({ eku: [bad] })).toEqual([
        {
          path: ['eku'],
          message: `"${bad}" is not a key purpose name (serverAuth, clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning) or a dotted OID`,
        },
      ]);
    expect(issues({ eku: ['1.2'] })).toEqual([]);
    // Whole value: digits-dot-digits from the first character to the last.
    expect(issues({ eku: ['25.3.4'] })).toEqual([]);
    expect(issues({ eku: ['1.2.3x'] })).toHaveLength(1);
    expect(issues({ eku: ['x1.2.3'] })).toHaveLength(1);
  });

  it('refuses serials that are not hex, and unknown fields', () => {
    expect(issues({ serials: ['12g4'] })).toEqual([{ path: ['serials', 0], message: 'serials are hex' }]);
    expect(issues({ subject_cn: 'x', subject_o: 'y' })).toHaveLength(1);
  });
});
