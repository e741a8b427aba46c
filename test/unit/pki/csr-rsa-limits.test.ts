/**
 * Issue #11 item 9f: an RSA CSR is verified before its sender is authenticated, and RSA
 * verification costs grow with the public exponent's length. A 2048-bit key with a ~2000-bit
 * exponent (OpenSSL caps e at 64 bits only for moduli above 3072 bits) made each refused join
 * cost many times a normal one. parseCsr now refuses e ≥ 2^32, even or < 3 e, and moduli over
 * 4096 bits before it verifies anything.
 */
import { createPrivateKey, createPublicKey, generatePrimeSync, randomBytes, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseCsr } from '../../../src/pki/csr.js';
import { bitString, integer, nullValue, oid, sequence } from '../../../src/pki/der.js';
import { codeOf, rawCsr } from './helpers.js';

const b64u = (v: bigint): string => {
  let h = v.toString(16);
  if (h.length % 2) h = `0${h}`;
  return Buffer.from(h, 'hex').toString('base64url');
};
const modPow = (b: bigint, e: bigint, m: bigint): bigint => {
  let r = 1n;
  b %= m;
  for (; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
  return r;
};
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? a : gcd(b, a % b));
const modInv = (a: bigint, m: bigint): bigint => {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
};

/** A real RSA key pair (n of `bits` bits) with the public exponent `e` (primes drawn until e is invertible). */
function rsaKeyWithExponent(bits: number, e: bigint): { privateKey: KeyObject; publicKey: KeyObject; e: bigint } {
  let p: bigint, q: bigint, phi: bigint;
  do {
    p = generatePrimeSync(bits / 2, { bigint: true });
    q = generatePrimeSync(bits / 2, { bigint: true });
    phi = (p - 1n) * (q - 1n);
  } while (p === q || gcd(e, phi) !== 1n);
  const d = modInv(e, phi);
  const jwk = {
    kty: 'RSA',
    n: b64u(p * q),
    e: b64u(e),
    d: b64u(d),
    p: b64u(p),
    q: b64u(q),
    dp: b64u(d % (p - 1n)),
    dq: b64u(d % (q - 1n)),
    qi: b64u(modInv(q, p)),
  };
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  expect(modPow(modPow(42n, e, p * q), d, p * q)).toBe(42n);
  return { privateKey, publicKey: createPublicKey(privateKey), e };
}

/** A CSR over an arbitrary RSA public key (n, e) with a garbage signature: only the key checks can refuse it as unsupported_key. */
function fakeRsaCsr(n: bigint, e: bigint): Buffer {
  const spki = sequence(
    sequence(oid('1.2.840.113549.1.1.1'), nullValue()),
    bitString(sequence(integer(n), integer(e))),
  );
  const cri = sequence(integer(0), sequence(), spki, Buffer.from([0xa0, 0x00]));
  return sequence(cri, sequence(oid('1.2.840.113549.1.1.11'), nullValue()), bitString(randomBytes(256)));
}
const randomModulus = (bits: number): bigint =>
  BigInt(`0x${randomBytes(bits / 8).toString('hex')}`) | (1n << BigInt(bits - 1)) | 1n;

describe('RSA key limits in CSRs (issue #11 item 9f)', () => {
  it('refuses a validly self-signed CSR whose exponent is ~2000 bits, before verifying it', () => {
    const huge = rsaKeyWithExponent(2048, (1n << 2000n) + 1n);
    const csr = rawCsr(huge.privateKey, huge.publicKey);
    const t0 = process.hrtime.bigint();
    let err: unknown;
    try {
      parseCsr(csr);
    } catch (e) {
      err = e;
    }
    const refusedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(err).toMatchObject({
      code: 'unsupported_key',
      message: expect.stringMatching(/public exponent a 2001-bit number is not accepted/),
    });
    expect(refusedMs).toBeLessThan(50);
  });

  it('accepts e = 65537 and e = 3; refuses e = 1, an even e and e = 2^32 + 1 (garbage signatures: the key check comes first)', () => {
    const normal = rsaKeyWithExponent(2048, 65537n);
    expect(parseCsr(rawCsr(normal.privateKey, normal.publicKey)).keyType).toBe('rsa');
    const three = rsaKeyWithExponent(2048, 3n);
    expect(three.e).toBe(3n);
    expect(parseCsr(rawCsr(three.privateKey, three.publicKey)).keyType).toBe('rsa');
    const n = randomModulus(2048);
    expect(codeOf(() => parseCsr(fakeRsaCsr(n, 65537n)))).toBe('csr_signature_invalid');
    for (const e of [1n, 65536n, (1n << 32n) + 1n, (1n << 64n) + 1n])
      expect(
        codeOf(() => parseCsr(fakeRsaCsr(n, e))),
        String(e),
      ).toBe('unsupported_key');
    expect(codeOf(() => parseCsr(fakeRsaCsr(n, (1n << 32n) - 1n)))).toBe('csr_signature_invalid');
  });

  it('refuses moduli above 4096 bits', () => {
    expect(codeOf(() => parseCsr(fakeRsaCsr(randomModulus(4096), 65537n)))).toBe('csr_signature_invalid');
    expect(codeOf(() => parseCsr(fakeRsaCsr(randomModulus(4096 + 64), 65537n)))).toBe('unsupported_key');
    expect(codeOf(() => parseCsr(fakeRsaCsr(randomModulus(8192), 65537n)))).toBe('unsupported_key');
  });
});
