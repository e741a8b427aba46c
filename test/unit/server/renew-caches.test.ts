/**
 * The small objects behind the cheaper renewal (issue #14): the public-key cache (exact SPKI
 * bytes → the same key the import gives, bounded), the issued-leaf memo (bounded) and the
 * stored-answer codec (byte-for-byte round trip, refuses to rebuild with other CA certificates).
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { importSpki, PublicKeyCache } from '../../../src/pki/key-cache.js';
import { IssuedLeafMemo } from '../../../src/pki/own-leaf.js';
import { StoredAnswerCodec } from '../../../src/server/ops/stored-answer.js';

const spkiOf = (curve: string): Buffer =>
  generateKeyPairSync('ec', { namedCurve: curve }).publicKey.export({ type: 'spki', format: 'der' });

describe('importSpki / PublicKeyCache', () => {
  it('imports P-256 (through JWK) and P-384 and RSA (through DER) as the DER import would', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
    for (const spki of [spkiOf('P-256'), spkiOf('P-384'), rsa]) {
      const k = importSpki(spki);
      expect(k.export({ type: 'spki', format: 'der' }).equals(spki)).toBe(true);
      expect(k.asymmetricKeyDetails).toEqual(
        createPublicKey({ key: spki, format: 'der', type: 'spki' }).asymmetricKeyDetails,
      );
    }
  });

  it('refuses a P-256 point that is not on the curve', () => {
    const spki = spkiOf('P-256');
    spki[spki.length - 1] ^= 0x01; // y changed: off the curve
    expect(() => importSpki(spki)).toThrow();
  });

  it('returns the cached key for the same bytes, verifies with it like a fresh one, and stays bounded', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const cache = new PublicKeyCache(3);
    const k = cache.publicKey(spki);
    expect(cache.publicKey(Buffer.from(spki))).toBe(k);
    const data = Buffer.from('renew');
    const sig = sign('sha256', data, privateKey);
    expect(verify('sha256', data, k, sig)).toBe(true);
    expect(verify('sha256', Buffer.from('other'), k, sig)).toBe(false);
    for (let i = 0; i < 5; i++) cache.publicKey(spkiOf('P-256'));
    expect(cache.size).toBe(3);
    expect(cache.publicKey(spki)).not.toBe(k); // evicted, imported again
  });
});

describe('IssuedLeafMemo', () => {
  it('remembers the signer of exact bytes only, and forgets the oldest past its bound', () => {
    const memo = new IssuedLeafMemo(2);
    const ca = Buffer.from('ca');
    const leaves = [Buffer.from('leaf-1'), Buffer.from('leaf-2'), Buffer.from('leaf-3')];
    memo.remember(leaves[0]!, ca);
    expect(memo.signerOf(Buffer.from('leaf-1'))).toEqual(ca);
    expect(memo.signerOf(Buffer.from('leaf-1 '))).toBeUndefined();
    memo.remember(leaves[1]!, ca);
    memo.remember(leaves[2]!, ca);
    expect(memo.size).toBe(2);
    expect(memo.signerOf(leaves[0]!)).toBeUndefined();
  });
});

describe('StoredAnswerCodec', () => {
  const inter = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const root = '-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n';
  const codec = new StoredAnswerCodec([inter, root]);

  it('round-trips byte for byte, eliding every occurrence of the constants', () => {
    const json = JSON.stringify({ result: { chain: ['leaf', inter], bundle: [root], transport_chain: ['t', inter] } });
    const stored = codec.compact(json);
    expect(stored.startsWith('\u0001')).toBe(true);
    expect(stored).not.toContain('MIIB');
    expect(stored).not.toContain('MIIC');
    expect(codec.expand(stored)).toBe(json);
  });

  it('keeps an answer without the constants, and any whole answer, as it is', () => {
    const json = JSON.stringify({ result: { jwt: 'x.y.z', note: 'MIIB \\u0001a' } });
    expect(codec.compact(json)).toBe(json);
    expect(codec.expand(json)).toBe(json);
  });

  it('refuses to rebuild an answer stored for other CA certificates', () => {
    const other = new StoredAnswerCodec([inter.replace('MIIB', 'MIID'), root]);
    const stored = other.compact(JSON.stringify({ chain: ['leaf', inter.replace('MIIB', 'MIID')] }));
    expect(() => codec.expand(stored)).toThrow(expect.objectContaining({ code: 'internal' }));
  });
});
