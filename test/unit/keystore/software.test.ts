import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { createSigner, loadSigner, parseKeyRef, serializeKeyRef } from '../../../src/keystore/index.js';
import { SoftwareSigner } from '../../../src/keystore/software.js';

describe('SoftwareSigner', () => {
  it('labels itself software, exportable, ES256', () => {
    const s = SoftwareSigner.generate();
    expect(s.storage).toBe('software');
    expect(s.exportable).toBe(true);
    expect(s.algorithm).toBe('ES256');
  });

  it('produces DER ECDSA signatures that crypto.verify accepts with the SPKI', async () => {
    const s = SoftwareSigner.generate();
    const data = Buffer.from('to be signed');
    const sig = await s.sign(data);
    expect(sig[0]).toBe(0x30); // DER SEQUENCE, not raw r||s
    const pub = createPublicKey({ key: s.publicKeySpki(), format: 'der', type: 'spki' });
    expect(pub.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(verify('sha256', data, { key: pub, dsaEncoding: 'der' }, sig)).toBe(true);
    expect(verify('sha256', Buffer.from('other'), { key: pub, dsaEncoding: 'der' }, sig)).toBe(false);
  });

  it('round-trips through PKCS#8 PEM', async () => {
    const a = SoftwareSigner.generate();
    const pem = a.toPkcs8Pem();
    expect(pem).toContain('-----BEGIN PRIVATE KEY-----');
    const b = SoftwareSigner.fromPkcs8Pem(pem);
    expect(b.publicKeySpki().equals(a.publicKeySpki())).toBe(true);
    const sig = await b.sign(Buffer.from('x'));
    expect(
      verify(
        'sha256',
        Buffer.from('x'),
        { key: createPublicKey({ key: a.publicKeySpki(), format: 'der', type: 'spki' }), dsaEncoding: 'der' },
        sig,
      ),
    ).toBe(true);
  });

  it('refuses garbage, other curves and RSA with coded errors', () => {
    expect(() => SoftwareSigner.fromPkcs8Pem('nope')).toThrow(SigilError);
    expect(() => SoftwareSigner.fromPkcs8Pem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')).toThrow(
      SigilError,
    );
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    try {
      SoftwareSigner.fromPkcs8Pem(p384);
      throw new Error('expected refusal');
    } catch (err) {
      expect((err as SigilError).code).toBe('unsupported_key');
    }
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    expect(() => SoftwareSigner.fromPkcs8Pem(rsa)).toThrow(/P-256/);
  });
});

describe('keystore index', () => {
  it('createSigner returns a ref that loadSigner turns back into the same key', () => {
    const { signer, ref } = createSigner('software');
    expect(ref.storage).toBe('software');
    const again = loadSigner(parseKeyRef(serializeKeyRef(ref)));
    expect(again.publicKeySpki().equals(signer.publicKeySpki())).toBe(true);
  });

  it('parseKeyRef refuses malformed references with config_invalid', () => {
    for (const bad of ['{', '[]', '{"storage":"tpm"}', '{"storage":"software"}']) {
      try {
        parseKeyRef(bad);
        throw new Error('expected refusal');
      } catch (err) {
        expect((err as SigilError).code).toBe('config_invalid');
      }
    }
  });
});
