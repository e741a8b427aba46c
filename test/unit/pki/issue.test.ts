/** Issued certificates parsed back with an independent implementation (@peculiar/x509). */
import 'reflect-metadata';
import { createHash, generateKeyPairSync, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { createRootCa, issueServerCert } from '../../../src/pki/ca.js';
import { readCertificate } from '../../../src/pki/cert-reader.js';
import { CertificateIssuer, type SvidRequest } from '../../../src/pki/issue.js';
import { subjectNameDer } from '../../../src/pki/name.js';
import { randomSerial, serialHex } from '../../../src/pki/serial.js';
import { readSpki } from '../../../src/pki/spki.js';
import { codeOf, ecKey, hierarchy, TD } from './helpers.js';

const h = hierarchy();
const NOW = new Date('2030-05-01T10:00:00.456Z');
const LATER = new Date('2030-05-01T11:00:00Z');

function svid(over: Partial<SvidRequest> = {}): { der: Buffer; cert: x509.X509Certificate; req: SvidRequest } {
  const req: SvidRequest = {
    serial: randomSerial(),
    spkiDer: ecKey().spki,
    spiffeId: `spiffe://${TD}/bot/edge-7`,
    notBefore: NOW,
    notAfter: LATER,
    ...over,
  };
  const der = h.issuer.issueSvid(req);
  return { der, cert: new x509.X509Certificate(der), req };
}

function ext<T extends x509.Extension>(cert: x509.X509Certificate, type: new (raw: webcrypto.BufferSource) => T): T {
  const e = cert.getExtension(type);
  if (e === null) throw new Error(`missing ${type.name}`);
  return e;
}

describe('issueSvid: X509-SVID profile', () => {
  it('has the SPIFFE leaf extensions (X509-SVID §4) and the requested fields', () => {
    const { cert, req } = svid();
    expect(cert.serialNumber.toLowerCase()).toBe(serialHex(req.serial));
    expect(cert.notBefore.toISOString()).toBe('2030-05-01T10:00:00.000Z'); // milliseconds dropped
    expect(cert.notAfter.toISOString()).toBe(LATER.toISOString());
    expect(cert.issuer).toBe('O=Sigil, CN=example.org intermediate CA');
    expect(cert.subject).toBe('');

    const bc = ext(cert, x509.BasicConstraintsExtension);
    expect(bc.critical).toBe(true);
    expect(bc.ca).toBe(false);

    const ku = ext(cert, x509.KeyUsagesExtension);
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.digitalSignature);

    const eku = ext(cert, x509.ExtendedKeyUsageExtension);
    expect(eku.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);

    const san = ext(cert, x509.SubjectAlternativeNameExtension);
    expect(san.critical).toBe(true); // empty subject → critical SAN (RFC 5280 §4.1.2.6)
    expect(san.names.items.map((n) => [n.type, n.value])).toEqual([['url', `spiffe://${TD}/bot/edge-7`]]);
  });

  it('SKI is SHA-1 of the subject key bits; AKI is the issuing CA SKI', () => {
    const { cert, req } = svid();
    const bits = readSpki(req.spkiDer).publicKey;
    expect(ext(cert, x509.SubjectKeyIdentifierExtension).keyId).toBe(createHash('sha1').update(bits).digest('hex'));
    const caSki = ext(new x509.X509Certificate(h.inter.certDer), x509.SubjectKeyIdentifierExtension).keyId;
    expect(ext(cert, x509.AuthorityKeyIdentifierExtension).keyId).toBe(caSki);
  });

  it('copies the SPKI as-is and the CA subject byte-exact as issuer', () => {
    const { der, req } = svid();
    const f = readCertificate(der);
    expect(f.spki).toEqual(req.spkiDer);
    expect(f.issuer).toEqual(subjectNameDer(h.inter.certDer));
    expect(f.version).toBe(3);
  });

  it('verifies with the CA key (peculiar and node)', async () => {
    const { der, cert } = svid();
    const ca = new x509.X509Certificate(h.inter.certDer);
    expect(await cert.verify({ publicKey: ca.publicKey, signatureOnly: true })).toBe(true);
    expect(new NodeX509(der).verify(new NodeX509(h.inter.certDer).publicKey)).toBe(true);
    expect(cert.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } });
  });

  it('with a subject: names in order, SAN not critical, DNS and IP SANs after the URI', () => {
    const { cert } = svid({
      subject: [
        ['O', 'Acme'],
        ['CN', 'edge-7'],
      ],
      dnsNames: ['edge-7.example.org'],
      ipAddresses: ['10.0.0.7', '2001:db8::7'],
    });
    expect(cert.subject).toBe('O=Acme, CN=edge-7');
    const san = ext(cert, x509.SubjectAlternativeNameExtension);
    expect(san.critical).toBe(false);
    expect(san.names.items.map((n) => [n.type, n.value])).toEqual([
      ['url', `spiffe://${TD}/bot/edge-7`],
      ['dns', 'edge-7.example.org'],
      ['ip', '10.0.0.7'],
      ['ip', '2001:db8::7'],
    ]);
  });

  it('RSA subject keys also get keyEncipherment (X509-SVID §4.3)', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { cert } = svid({ spkiDer: publicKey.export({ type: 'spki', format: 'der' }) });
    expect(ext(cert, x509.KeyUsagesExtension).usages).toBe(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
  });

  it('P-384 subject keys are accepted; notAfter past 2049 uses GeneralizedTime', () => {
    const { cert, der } = svid({ spkiDer: ecKey('P-384').spki, notAfter: new Date('2051-01-01T00:00:00Z') });
    expect(cert.notAfter.toISOString()).toBe('2051-01-01T00:00:00.000Z');
    expect(der.includes(Buffer.from('20510101000000Z'))).toBe(true);
  });

  it('a P-384 CA signs with ecdsa-with-SHA384', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const root = createRootCa({ trustDomain: TD });
    const caDer = new CertificateIssuer({ caCertDer: root.certDer, caKey: root.key }).issueCa({
      serial: randomSerial(),
      spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
      subject: [['CN', 'p384 CA']],
      notBefore: NOW,
      notAfter: LATER,
    });
    const issuer = new CertificateIssuer({ caCertDer: caDer, caKey: privateKey });
    expect(issuer.hash).toBe('sha384');
    const der = issuer.issueSvid({
      serial: randomSerial(),
      spkiDer: ecKey().spki,
      spiffeId: `spiffe://${TD}/x`,
      notBefore: NOW,
      notAfter: LATER,
    });
    const cert = new x509.X509Certificate(der);
    expect(cert.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-384' } });
    expect(await cert.verify({ publicKey: new x509.X509Certificate(caDer).publicKey, signatureOnly: true })).toBe(true);
  });
});

describe('issueSvid: refusals', () => {
  it('bad serials and validity are caller errors (TypeError)', () => {
    expect(() => svid({ serial: Buffer.from([0]) })).toThrow(TypeError);
    expect(() => svid({ serial: Buffer.alloc(21, 1) })).toThrow(TypeError);
    expect(() => svid({ serial: Buffer.alloc(20, 0xff) })).toThrow(/21 octets/);
    expect(() => svid({ notAfter: NOW })).toThrow(TypeError);
    expect(() => svid({ notBefore: new Date(NaN) })).toThrow(TypeError);
  });

  it('leaf SPIFFE IDs must be valid and have a path', () => {
    expect(codeOf(() => svid({ spiffeId: `spiffe://${TD}` }))).toBe('bad_request');
    expect(codeOf(() => svid({ spiffeId: `spiffe://${TD}/a/../b` }))).toBe('bad_request');
    expect(codeOf(() => svid({ dnsNames: ['bad name'] }))).toBe('bad_request');
    expect(codeOf(() => svid({ ipAddresses: ['10.0.0.300'] }))).toBe('bad_request');
  });

  it('unsupported subject keys', () => {
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' });
    expect(codeOf(() => svid({ spkiDer: ed }))).toBe('unsupported_key');
    expect(() => svid({ spkiDer: ed })).toThrow(/1\.3\.101\.112/);
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(codeOf(() => svid({ spkiDer: p521 }))).toBe('unsupported_key');
    expect(codeOf(() => svid({ spkiDer: Buffer.from('3000', 'hex') }))).toBe('unsupported_key');
  });
});

describe('CertificateIssuer construction', () => {
  it('refuses a key that does not match the CA certificate', () => {
    expect(codeOf(() => new CertificateIssuer({ caCertDer: h.inter.certDer, caKey: h.root.key }))).toBe(
      'config_invalid',
    );
  });

  it('refuses a non-CA certificate and unsupported CA keys', () => {
    const leafKey = ecKey();
    const leaf = h.issuer.issueSvid({
      serial: randomSerial(),
      spkiDer: leafKey.spki,
      spiffeId: `spiffe://${TD}/x`,
      notBefore: NOW,
      notAfter: LATER,
    });
    expect(codeOf(() => new CertificateIssuer({ caCertDer: leaf, caKey: leafKey.privateKey }))).toBe('config_invalid');
    expect(
      codeOf(
        () => new CertificateIssuer({ caCertDer: h.inter.certDer, caKey: generateKeyPairSync('ed25519').privateKey }),
      ),
    ).toBe('config_invalid');
    expect(codeOf(() => new CertificateIssuer({ caCertDer: Buffer.from('junk'), caKey: h.inter.key }))).toBe(
      'config_invalid',
    );
  });
});

describe('CA certificates', () => {
  it('root: self-signed, CA critical, keyCertSign+cRLSign, SKI, URI spiffe://<td>', async () => {
    const cert = new x509.X509Certificate(h.root.certDer);
    expect(await cert.isSelfSigned()).toBe(true);
    expect(ext(cert, x509.BasicConstraintsExtension)).toMatchObject({
      ca: true,
      critical: true,
      pathLength: undefined,
    });
    expect(ext(cert, x509.KeyUsagesExtension)).toMatchObject({
      critical: true,
      usages: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    });
    expect(ext(cert, x509.SubjectAlternativeNameExtension).names.items.map((n) => n.value)).toEqual([`spiffe://${TD}`]);
    const years = (cert.notAfter.getTime() - cert.notBefore.getTime()) / (365 * 86_400_000);
    expect(years).toBeGreaterThan(9.9);
  });

  it('intermediate: pathLen 0, signed by the root, ~5 years', async () => {
    const cert = new x509.X509Certificate(h.inter.certDer);
    expect(ext(cert, x509.BasicConstraintsExtension)).toMatchObject({ ca: true, critical: true, pathLength: 0 });
    expect(
      await cert.verify({ publicKey: new x509.X509Certificate(h.root.certDer).publicKey, signatureOnly: true }),
    ).toBe(true);
    const years = (cert.notAfter.getTime() - cert.notBefore.getTime()) / (365 * 86_400_000);
    expect(years).toBeGreaterThan(4.9);
    expect(years).toBeLessThan(5.1);
  });

  it('a pathLen 0 CA cannot issue another CA', () => {
    expect(() =>
      h.issuer.issueCa({
        serial: randomSerial(),
        spkiDer: ecKey().spki,
        subject: [['CN', 'sub']],
        notBefore: NOW,
        notAfter: LATER,
      }),
    ).toThrow(/pathLen 0/);
  });

  it('issueServerCert: spiffe://<td>/sigil/issuer with DNS and IP SANs, serverAuth+clientAuth', () => {
    const der = issueServerCert(h.issuer, {
      trustDomain: TD,
      dnsNames: ['issuer.example.org', 'localhost'],
      ipAddresses: ['127.0.0.1'],
      ttlDays: 30,
      spkiDer: ecKey().spki,
    });
    const cert = new x509.X509Certificate(der);
    expect(ext(cert, x509.SubjectAlternativeNameExtension).names.items.map((n) => n.value)).toEqual([
      `spiffe://${TD}/sigil/issuer`,
      'issuer.example.org',
      'localhost',
      '127.0.0.1',
    ]);
    expect(ext(cert, x509.ExtendedKeyUsageExtension).usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    expect(ext(cert, x509.BasicConstraintsExtension).ca).toBe(false);
  });
});
