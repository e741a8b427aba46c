import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildCsr, MAX_CSR_BYTES, parseCsr } from '../../../src/pki/csr.js';
import { bitString, integer, oid, sequence } from '../../../src/pki/der.js';
import { DerReader } from '../../../src/pki/der-reader.js';
import { toPem } from '../../../src/pki/pem.js';
import { codeOf, rawCsr, TD, testSigner } from './helpers.js';

describe('parseCsr', () => {
  it('accepts buildCsr output as DER, PEM string and PEM Buffer', async () => {
    const signer = testSigner();
    const der = await buildCsr(signer, { commonName: 'edge-7' });
    for (const input of [
      der,
      toPem('CERTIFICATE REQUEST', der),
      Buffer.from(toPem('CERTIFICATE REQUEST', der)),
      toPem('NEW CERTIFICATE REQUEST', der),
    ]) {
      const csr = parseCsr(input);
      expect(csr.keyType).toBe('ec-p256');
      expect(csr.spkiDer).toEqual(signer.publicKeySpki());
      expect(csr.publicKey.type).toBe('public');
    }
  });

  it('returns the URI SANs of the extensionRequest attribute', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(parseCsr(rawCsr(privateKey, publicKey, { sanUri: `spiffe://${TD}/a` })).uris).toEqual([`spiffe://${TD}/a`]);
  });

  it('RSA: 2048 accepted with sha256WithRSAEncryption; 1024 is unsupported_key', () => {
    const k2048 = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(parseCsr(rawCsr(k2048.privateKey, k2048.publicKey)).keyType).toBe('rsa');
    const k1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(codeOf(() => parseCsr(rawCsr(k1024.privateKey, k1024.publicKey)))).toBe('unsupported_key');
    expect(() => parseCsr(rawCsr(k1024.privateKey, k1024.publicKey))).toThrow(/RSA key of 1024 bits/);
  });

  it('other key types are unsupported_key, naming the type', () => {
    const ed = generateKeyPairSync('ed25519');
    expect(codeOf(() => parseCsr(rawCsr(ed.privateKey, ed.publicKey)))).toBe('unsupported_key');
    expect(() => parseCsr(rawCsr(ed.privateKey, ed.publicKey))).toThrow(/Ed25519/);
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
    expect(() => parseCsr(rawCsr(p521.privateKey, p521.publicKey))).toThrow(/P-521 is not supported/);
  });

  it('a tampered CertificationRequestInfo is csr_signature_invalid', async () => {
    const der = await buildCsr(testSigner(), { commonName: 'edge-7' });
    const at = der.indexOf(Buffer.from('edge-7'));
    der[at] = 'E'.charCodeAt(0);
    expect(codeOf(() => parseCsr(der))).toBe('csr_signature_invalid');
  });

  it('a signature from another key is csr_signature_invalid', async () => {
    const a = await buildCsr(testSigner());
    const b = await buildCsr(testSigner());
    const parts = (d: Buffer): Buffer[] => {
      const r = new DerReader(d, 'bad_csr', 'test');
      return r.children(r.root()).map((n) => r.bytes(n));
    };
    const [criA, algA] = parts(a);
    const forged = sequence(criA!, algA!, parts(b)[2]!);
    expect(codeOf(() => parseCsr(forged))).toBe('csr_signature_invalid');
  });

  it('garbage and structural errors are bad_csr with a reason', () => {
    expect(codeOf(() => parseCsr(Buffer.from('hello world')))).toBe('bad_csr');
    expect(codeOf(() => parseCsr('hello world'))).toBe('bad_csr');
    expect(
      codeOf(() => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\n%%%\n-----END CERTIFICATE REQUEST-----\n')),
    ).toBe('bad_csr');
    expect(codeOf(() => parseCsr(toPem('CERTIFICATE', Buffer.from([1, 2]))))).toBe('bad_csr');
    expect(codeOf(() => parseCsr(Buffer.alloc(0)))).toBe('bad_csr');
    expect(codeOf(() => parseCsr(sequence(integer(1))))).toBe('bad_csr');
    expect(() => parseCsr(Buffer.alloc(MAX_CSR_BYTES + 1))).toThrow(/larger than the 16384-byte limit/);
  });

  it('refuses trailing bytes, a wrong version and an unknown signature algorithm', async () => {
    const signer = testSigner();
    const der = await buildCsr(signer);
    expect(codeOf(() => parseCsr(Buffer.concat([der, Buffer.from([0])])))).toBe('bad_csr');

    const v1 = Buffer.from(der);
    const vAt = v1.indexOf(Buffer.from([0x02, 0x01, 0x00]));
    v1[vAt + 2] = 1;
    expect(() => parseCsr(v1)).toThrow(/version is 1/);

    const cri = sequence(integer(0), sequence(), signer.publicKeySpki(), Buffer.from([0xa0, 0]));
    const odd = sequence(cri, sequence(oid('1.2.840.10045.4.1')), bitString(await signer.sign(cri)));
    expect(codeOf(() => parseCsr(odd))).toBe('bad_csr');
    expect(() => parseCsr(odd)).toThrow(/signature algorithm 1\.2\.840\.10045\.4\.1 is not supported/);

    const mismatch = sequence(cri, sequence(oid('1.2.840.113549.1.1.11')), bitString(await signer.sign(cri)));
    expect(() => parseCsr(mismatch)).toThrow(/does not match/);
  });
});

describe('buildCsr', () => {
  it('ES384 signers produce ecdsa-with-SHA384 CSRs with an empty attribute set', async () => {
    const der = await buildCsr(testSigner('P-384'));
    expect(der.includes(oid('1.2.840.10045.4.3.3'))).toBe(true);
    expect(der.includes(Buffer.from([0xa0, 0x00]))).toBe(true);
    expect(parseCsr(der).keyType).toBe('ec-p384');
  });
});
