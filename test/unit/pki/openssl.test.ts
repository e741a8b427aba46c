/** Cross-checks against the real openssl binary: what we issue, it verifies; what it makes, we parse. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { issueServerCert } from '../../../src/pki/ca.js';
import { spkiPin } from '../../../src/pki/chain.js';
import { buildCsr, parseCsr } from '../../../src/pki/csr.js';
import { toPem } from '../../../src/pki/pem.js';
import { randomSerial } from '../../../src/pki/serial.js';
import { codeOf, ecKey, hierarchy, openssl, opensslAll, opensslBytes, TD, testSigner, withTempDir } from './helpers.js';

const h = hierarchy();
const now = Date.now();

function leafDer(subject?: [['CN', string]]): Buffer {
  return h.issuer.issueSvid({
    serial: randomSerial(),
    spkiDer: ecKey().spki,
    spiffeId: `spiffe://${TD}/bot/edge-7`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    subject,
    dnsNames: ['edge-7.example.org'],
    ipAddresses: ['10.0.0.7'],
  });
}

describe('openssl verifies what Sigil issues', () => {
  it('root + intermediate + leaf: `openssl verify -x509_strict` for TLS client and server', () => {
    withTempDir((_dir, write) => {
      const root = write('root.pem', toPem('CERTIFICATE', h.root.certDer));
      const inter = write('inter.pem', toPem('CERTIFICATE', h.inter.certDer));
      for (const [name, der] of [
        ['empty-subject.pem', leafDer()],
        ['with-subject.pem', leafDer([['CN', 'edge-7']])],
      ] as const) {
        const leaf = write(name, toPem('CERTIFICATE', der));
        for (const purpose of ['sslclient', 'sslserver']) {
          expect(
            openssl(['verify', '-x509_strict', '-purpose', purpose, '-CAfile', root, '-untrusted', inter, leaf]),
          ).toContain(': OK');
        }
        const text = openssl(['x509', '-noout', '-text', '-in', leaf]);
        expect(text).toContain(`URI:spiffe://${TD}/bot/edge-7, DNS:edge-7.example.org, IP Address:10.0.0.7`);
        expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
        expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
        expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
      }
      // the root checks as a self-signed trust anchor, the intermediate against it
      expect(openssl(['verify', '-x509_strict', '-check_ss_sig', '-CAfile', root, root])).toContain(': OK');
      expect(openssl(['verify', '-x509_strict', '-CAfile', root, inter])).toContain(': OK');
    });
  });

  it('issuer server certificate verifies for sslserver and names the host', () => {
    withTempDir((_dir, write) => {
      const der = issueServerCert(h.issuer, {
        trustDomain: TD,
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1', '::1'],
        ttlDays: 90,
        spkiDer: ecKey().spki,
      });
      const leaf = write('server.pem', toPem('CERTIFICATE', der));
      const args = [
        'verify',
        '-x509_strict',
        '-purpose',
        'sslserver',
        '-CAfile',
        write('root.pem', toPem('CERTIFICATE', h.root.certDer)),
        '-untrusted',
        write('inter.pem', toPem('CERTIFICATE', h.inter.certDer)),
      ];
      expect(openssl([...args, '-verify_hostname', 'localhost', leaf])).toContain(': OK');
      expect(openssl([...args, '-verify_ip', '127.0.0.1', leaf])).toContain(': OK');
      expect(openssl(['x509', '-noout', '-ext', 'subjectAltName', '-in', leaf])).toContain(
        `URI:spiffe://${TD}/sigil/issuer`,
      );
    });
  });

  it('spkiPin equals the SHA-256 of the DER public key openssl extracts', () => {
    withTempDir((_dir, write) => {
      const pem = write('root.pem', toPem('CERTIFICATE', h.root.certDer));
      const pubPem = openssl(['x509', '-noout', '-pubkey', '-in', pem]);
      const spki = opensslBytes(['pkey', '-pubin', '-outform', 'DER'], pubPem);
      expect(spkiPin(h.root.certDer)).toBe(`sha256:${createHash('sha256').update(spki).digest('hex')}`);
      expect(spkiPin(readFileSync(pem))).toBe(spkiPin(h.root.certDer)); // PEM bytes accepted too
    });
  });
});

describe('parseCsr reads what openssl makes', () => {
  const req = (dir: string, keyArgs: string[], extra: string[] = []): string => {
    const out = join(dir, 'req.pem');
    openssl([
      'req',
      '-new',
      ...keyArgs,
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-subj',
      '/CN=x',
      '-out',
      out,
      ...extra,
    ]);
    return readFileSync(out, 'utf8');
  };

  it('EC P-256 (the documented agent command), PEM and DER', () => {
    withTempDir((dir) => {
      const pem = req(dir, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
      const csr = parseCsr(pem);
      expect(csr.keyType).toBe('ec-p256');
      expect(csr.uris).toEqual([]);
      expect(csr.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      const der = opensslBytes(['req', '-in', join(dir, 'req.pem'), '-outform', 'DER']);
      expect(parseCsr(der).spkiDer).toEqual(csr.spkiDer);
      expect(openssl(['asn1parse', '-inform', 'DER'], csr.subjectDer)).toContain(':x');
    });
  });

  it('EC P-384 with SHA-384 and a requested URI SAN', () => {
    withTempDir((dir) => {
      const pem = req(
        dir,
        ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384'],
        ['-addext', `subjectAltName=URI:spiffe://${TD}/want,DNS:x.example`],
      );
      const csr = parseCsr(pem);
      expect(csr.keyType).toBe('ec-p384');
      expect(csr.uris).toEqual([`spiffe://${TD}/want`]);
    });
  });

  it('RSA 2048 is accepted, RSA 1024 is unsupported_key, Ed25519 is unsupported_key', () => {
    withTempDir((dir) => {
      expect(parseCsr(req(dir, ['-newkey', 'rsa:2048'])).keyType).toBe('rsa');
      expect(codeOf(() => parseCsr(req(dir, ['-newkey', 'rsa:1024'])))).toBe('unsupported_key');
      expect(() => parseCsr(req(dir, ['-newkey', 'rsa:1024']))).toThrow(/1024 bits/);
      expect(codeOf(() => parseCsr(req(dir, ['-newkey', 'ed25519'])))).toBe('unsupported_key');
    });
  });

  it('a P-256 CSR with one flipped signature byte is csr_signature_invalid', () => {
    withTempDir((dir) => {
      const der = opensslBytes(['req', '-in', writeReq(dir), '-outform', 'DER']);
      der[der.length - 1]! ^= 0x01; // last octet of ECDSA s: still well-formed DER, wrong value
      expect(codeOf(() => parseCsr(der))).toBe('csr_signature_invalid');
      expect(opensslAll(['req', '-verify', '-noout', '-inform', 'DER'], der)).toContain('verify failure');
    });
    function writeReq(dir: string): string {
      req(dir, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
      return join(dir, 'req.pem');
    }
  });
});

describe('openssl verifies what buildCsr makes', () => {
  it.each([
    ['P-256', 'edge-7'],
    ['P-256', undefined],
    ['P-384', 'edge-8'],
  ] as const)('%s signer, CN=%s', async (curve, cn) => {
    const signer = testSigner(curve);
    const der = await buildCsr(signer, cn === undefined ? undefined : { commonName: cn });
    withTempDir((_dir, write) => {
      const file = write('csr.pem', toPem('CERTIFICATE REQUEST', der));
      expect(opensslAll(['req', '-verify', '-noout', '-in', file])).toContain('verify OK');
      const text = openssl(['req', '-noout', '-text', '-in', file]);
      expect(text).toContain(curve === 'P-256' ? 'ecdsa-with-SHA256' : 'ecdsa-with-SHA384');
      if (cn !== undefined) expect(text).toContain(`CN = ${cn}`);
    });
    const parsed = parseCsr(der);
    expect(parsed.spkiDer).toEqual(signer.publicKeySpki());
    expect(parsed.keyType).toBe(curve === 'P-256' ? 'ec-p256' : 'ec-p384');
  });
});
