import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { proofMessage, verifyProof, X509_CONTEXT } from '../../../src/join/x509/wire.js';
import { PemKeySigner } from '../../../src/keystore/pem-key.js';

const pem = (type: 'ec' | 'rsa', opts: object): string =>
  generateKeyPairSync(type as 'ec', opts as { namedCurve: string }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;

describe('x509 proof message', () => {
  it('is the context, a NUL, then length-prefixed nonce, agent nonce, request id and SPKI', () => {
    const m = proofMessage({
      challengeNonce: Buffer.alloc(32, 1),
      agentNonce: Buffer.alloc(32, 2),
      requestId: 'req-123',
      spkiDer: Buffer.from([0x30, 0x00]),
    });
    const expected = Buffer.concat([
      Buffer.from(`${X509_CONTEXT}\0`, 'latin1'),
      Buffer.from([0, 32]),
      Buffer.alloc(32, 1),
      Buffer.from([0, 32]),
      Buffer.alloc(32, 2),
      Buffer.from([0, 7]),
      Buffer.from('req-123'),
      Buffer.from([0, 0, 0, 2]),
      Buffer.from([0x30, 0x00]),
    ]);
    expect(m.equals(expected)).toBe(true);
    // Moving a byte from one field to the next changes the message (the lengths are explicit).
    const shifted = proofMessage({
      challengeNonce: Buffer.alloc(31, 1),
      agentNonce: Buffer.concat([Buffer.from([1]), Buffer.alloc(32, 2)]),
      requestId: 'req-123',
      spkiDer: Buffer.from([0x30, 0x00]),
    });
    expect(shifted.equals(m)).toBe(false);
  });

  it('verifies ES256, ES384, PS256 and RS256 and refuses an algorithm that does not fit the key', async () => {
    const msg = Buffer.from('challenge');
    const keys = [
      PemKeySigner.fromPem(pem('ec', { namedCurve: 'P-256' })),
      PemKeySigner.fromPem(pem('ec', { namedCurve: 'P-384' })),
      PemKeySigner.fromPem(pem('rsa', { modulusLength: 2048 })),
      PemKeySigner.fromPem(pem('rsa', { modulusLength: 2048 }), { rsa: 'RS256' }),
    ];
    expect(keys.map((k) => k.algorithm)).toEqual(['ES256', 'ES384', 'PS256', 'RS256']);
    for (const k of keys) {
      const sig = await k.sign(msg);
      expect(verifyProof(k.publicKeySpki(), k.algorithm, msg, sig)).toBe(true);
      expect(verifyProof(k.publicKeySpki(), k.algorithm, Buffer.from('other'), sig)).toBe(false);
    }
    const [p256, p384, rsa] = keys as [PemKeySigner, PemKeySigner, PemKeySigner];
    expect(verifyProof(p256.publicKeySpki(), 'ES384', msg, await p256.sign(msg))).toBe(false);
    expect(verifyProof(p384.publicKeySpki(), 'ES256', msg, await p384.sign(msg))).toBe(false);
    expect(verifyProof(rsa.publicKeySpki(), 'RS256', msg, await rsa.sign(msg))).toBe(false); // PSS signature, PKCS#1 claimed
    expect(verifyProof(p256.publicKeySpki(), 'PS256', msg, Buffer.from('junk'))).toBe(false);
  });

  it('PemKeySigner refuses small RSA, other curves and encrypted keys with coded errors', () => {
    expect(() => PemKeySigner.fromPem(pem('rsa', { modulusLength: 1024 }))).toThrow(/too small/);
    expect(() => PemKeySigner.fromPem(pem('ec', { namedCurve: 'secp256k1' }))).toThrow(/curve/);
    const enc = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'x',
    }) as string;
    expect(() => PemKeySigner.fromPem(enc)).toThrow(/encrypted/);
    // SEC1 ("EC PRIVATE KEY") as openssl ecparam writes it is read too.
    const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'sec1',
      format: 'pem',
    }) as string;
    expect(PemKeySigner.fromPem(sec1).algorithm).toBe('ES256');
  });
});
