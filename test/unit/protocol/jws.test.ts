/**
 * JWS envelopes (src/protocol/jws.ts). `jose` is not installed, so signatures are
 * cross-checked with raw node:crypto (RFC 7515 signing input, RFC 7518 §3.4 r||s encoding).
 */
import {
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { SoftwareSigner } from '../../../src/keystore/software.js';
import type { Signer } from '../../../src/keystore/signer.js';
import {
  b64u,
  derToJoseSignature,
  parseJws,
  signJws,
  signJwsWithKey,
  verifyJws,
  x5cDers,
  type Jws,
} from '../../../src/protocol/jws.js';

function p384Signer(): Signer & { pub: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  return {
    storage: 'software',
    exportable: true,
    algorithm: 'ES384',
    pub: publicKey,
    publicKeySpki: () => publicKey.export({ type: 'spki', format: 'der' }),
    sign: (data) => Promise.resolve(cryptoSign('sha384', data, { key: privateKey, dsaEncoding: 'der' })),
  };
}

const pubOf = (s: Signer): KeyObject => createPublicKey({ key: s.publicKeySpki(), format: 'der', type: 'spki' });

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SigilError);
  expect((err as SigilError).code).toBe(code);
  if (message) expect((err as SigilError).message).toMatch(message);
}

const header = (j: Jws) => JSON.parse(b64u.decode(j.protected).toString('utf8'));
const withHeader = (j: Jws, h: unknown): Jws => ({ ...j, protected: b64u.encode(JSON.stringify(h)) });
const verifyParsed = (j: Jws, key: KeyObject | Buffer) => {
  const p = parseJws(j);
  return verifyJws(p.jws, p.header, key);
};

describe('sign / verify round trip', () => {
  it.each([
    ['ES256', () => SoftwareSigner.generate(), 64],
    ['ES384', () => p384Signer(), 96],
  ] as const)('%s: verifies, and the signature checks out with raw node:crypto', async (alg, make, sigLen) => {
    const signer = make();
    const payload = { v: 1, hello: 'wörld', n: [1, 2, 3] };
    const j = await signJws(signer, 'test+jws', payload);
    expect(header(j)).toEqual({ alg, typ: 'test+jws' });
    const v = verifyParsed(j, pubOf(signer));
    expect(v.payload).toEqual(payload);
    expect(v.payloadBytes.toString('utf8')).toBe(JSON.stringify(payload));
    // Independent check: RFC 7515 signing input, fixed-width r||s.
    const sig = Buffer.from(j.signature, 'base64url');
    expect(sig).toHaveLength(sigLen);
    const hash = alg === 'ES256' ? 'sha256' : 'sha384';
    expect(
      cryptoVerify(
        hash,
        Buffer.from(`${j.protected}.${j.payload}`),
        { key: pubOf(signer), dsaEncoding: 'ieee-p1363' },
        sig,
      ),
    ).toBe(true);
    // Every member is unpadded base64url.
    for (const m of [j.protected, j.payload, j.signature]) expect(m).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('verifies with the key given as SPKI DER too', async () => {
    const s = SoftwareSigner.generate();
    expect(verifyParsed(await signJws(s, 't', { a: 1 }), s.publicKeySpki()).payload).toEqual({ a: 1 });
  });

  it('carries x5c as standard base64 DER, leaf first, and x5cDers returns the bytes', async () => {
    const certs = [Buffer.from([0xfb, 0xff, 0x01]), Buffer.from('second')];
    const j = await signJws(SoftwareSigner.generate(), 't', {}, certs);
    expect(header(j).x5c).toEqual(['+/8B', 'c2Vjb25k']);
    expect(x5cDers(parseJws(j).header)).toEqual(certs);
    expect(x5cDers({ alg: 'ES256', typ: 't' })).toEqual([]);
  });

  it('signJwsWithKey: a string payload is signed verbatim (stored responses replay byte-exact)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const text = '{"b":2,  "a":1}';
    const j = signJwsWithKey(privateKey, 'ES256', 'r', text, [Buffer.from('x')]);
    expect(b64u.decode(j.payload).toString()).toBe(text);
    expect(verifyParsed(j, publicKey).payload).toEqual({ a: 1, b: 2 });
    expect(header(j)).toEqual({ alg: 'ES256', typ: 'r', x5c: ['eA=='] });
    const obj = signJwsWithKey(privateKey, 'ES256', 'r', { a: 1 });
    expect(b64u.decode(obj.payload).toString()).toBe('{"a":1}');
  });
});

describe('tampering is detected', () => {
  it('a changed payload, header or signature → signature_invalid', async () => {
    const s = SoftwareSigner.generate();
    const j = await signJws(s, 't', { amount: 1 });
    const key = pubOf(s);
    expectCode(() => verifyParsed({ ...j, payload: b64u.encode('{"amount":2}') }, key), 'signature_invalid');
    expectCode(() => verifyParsed(withHeader(j, { ...header(j), typ: 'u' }), key), 'signature_invalid');
    expectCode(() => verifyParsed(withHeader(j, { ...header(j), x5c: ['AA=='] }), key), 'signature_invalid');
    const sig = b64u.decode(j.signature);
    sig[10] ^= 0x40;
    expectCode(() => verifyParsed({ ...j, signature: b64u.encode(sig) }, key), 'signature_invalid', /does not verify/);
    expectCode(
      () => verifyParsed({ ...j, signature: j.signature.slice(0, -4) }, key),
      'signature_invalid',
      /wrong length/,
    );
    expectCode(() => verifyParsed({ ...j, signature: '' }, key), 'signature_invalid');
  });

  it('a signature by another key → signature_invalid', async () => {
    const j = await signJws(SoftwareSigner.generate(), 't', {});
    expectCode(() => verifyParsed(j, pubOf(SoftwareSigner.generate())), 'signature_invalid');
  });

  it('a DER signature where r||s is expected → signature_invalid', async () => {
    const s = SoftwareSigner.generate();
    const j = await signJws(s, 't', {});
    const der = await s.sign(Buffer.from(`${j.protected}.${j.payload}`));
    expectCode(() => verifyParsed({ ...j, signature: b64u.encode(der) }, pubOf(s)), 'signature_invalid');
  });

  it('a validly signed non-JSON payload → bad_request', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expectCode(
      () => verifyParsed(signJwsWithKey(privateKey, 'ES256', 't', 'not json'), publicKey),
      'bad_request',
      /not JSON/,
    );
  });

  it('the caller-chosen code is used for every verification refusal', async () => {
    const s = SoftwareSigner.generate();
    const j = await signJws(s, 't', {});
    const p = parseJws(j);
    expectCode(
      () => verifyJws(p.jws, p.header, pubOf(SoftwareSigner.generate()), 'response_invalid'),
      'response_invalid',
    );
  });
});

describe('alg / key agreement', () => {
  it('header ES384 with a P-256 key (and vice versa) is refused before verifying', async () => {
    const p256 = SoftwareSigner.generate();
    const j256 = await signJws(p256, 't', {});
    expectCode(
      () => verifyParsed(withHeader(j256, { alg: 'ES384', typ: 't' }), pubOf(p256)),
      'signature_invalid',
      /does not match/,
    );
    const p384 = p384Signer();
    const j384 = await signJws(p384, 't', {});
    expectCode(
      () => verifyParsed(withHeader(j384, { alg: 'ES256', typ: 't' }), p384.pub),
      'signature_invalid',
      /does not match/,
    );
  });

  it('RSA, Ed25519 and secp256k1 keys are refused', async () => {
    const j = await signJws(SoftwareSigner.generate(), 't', {});
    const keys = [
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
      generateKeyPairSync('ed25519').publicKey,
      generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey,
    ];
    for (const k of keys) expectCode(() => verifyParsed(j, k), 'signature_invalid', /does not match/);
  });
});

describe('parseJws', () => {
  const ok = { protected: b64u.encode(JSON.stringify({ alg: 'ES256', typ: 't' })), payload: '', signature: '' };

  it('refuses every alg but ES256 / ES384 (none, HMAC, RSA, missing)', () => {
    for (const alg of ['none', 'HS256', 'RS256', 'PS256', 'EdDSA', 'es256', undefined, 256]) {
      expectCode(
        () => parseJws({ ...ok, protected: b64u.encode(JSON.stringify({ alg, typ: 't' })) }),
        'bad_request',
        /ES256 or ES384/,
      );
    }
    expect(parseJws({ ...ok, protected: b64u.encode(JSON.stringify({ alg: 'ES384', typ: 't' })) }).header.alg).toBe(
      'ES384',
    );
  });

  it('refuses non-objects, missing or non-base64url members, a non-JSON header, a missing typ', () => {
    for (const input of [null, undefined, 'jws', 42, true]) expectCode(() => parseJws(input), 'bad_request');
    expectCode(() => parseJws([]), 'bad_request');
    for (const k of ['protected', 'payload', 'signature'] as const) {
      expectCode(() => parseJws({ ...ok, [k]: undefined }), 'bad_request', new RegExp(k));
      expectCode(() => parseJws({ ...ok, [k]: 7 }), 'bad_request', new RegExp(k));
      expectCode(() => parseJws({ ...ok, [k]: 'ab+/' }), 'bad_request', /base64url/);
      expectCode(() => parseJws({ ...ok, [k]: 'YQ==' }), 'bad_request', /base64url/);
    }
    expectCode(() => parseJws({ ...ok, protected: b64u.encode('{alg') }), 'bad_request', /not JSON/);
    expectCode(() => parseJws({ ...ok, protected: b64u.encode('null') }), 'bad_request');
    expectCode(() => parseJws({ ...ok, protected: b64u.encode('"ES256"') }), 'bad_request');
    expectCode(
      () => parseJws({ ...ok, protected: b64u.encode(JSON.stringify({ alg: 'ES256' })) }),
      'bad_request',
      /typ/,
    );
  });

  it('refuses an x5c that is not an array of at most 5 strings', () => {
    const withX5c = (x5c: unknown) => ({
      ...ok,
      protected: b64u.encode(JSON.stringify({ alg: 'ES256', typ: 't', x5c })),
    });
    for (const x5c of [null, 'AA==', {}, [1], Array(6).fill('AA==')])
      expectCode(() => parseJws(withX5c(x5c)), 'bad_request', /x5c/);
    expect(parseJws(withX5c(Array(5).fill('AA=='))).header.x5c).toHaveLength(5);
  });

  it('uses the given code and returns only the three members', () => {
    expectCode(() => parseJws({}, 'response_invalid'), 'response_invalid');
    expect(parseJws({ ...ok, extra: 'ignored' }).jws).toEqual(ok);
  });
});

describe('derToJoseSignature', () => {
  const der = (r: Buffer, s: Buffer, longForm = false): Buffer => {
    const body = Buffer.concat([Buffer.from([0x02, r.length]), r, Buffer.from([0x02, s.length]), s]);
    return Buffer.concat([Buffer.from(longForm ? [0x30, 0x81, body.length] : [0x30, body.length]), body]);
  };

  it('left-pads short r and s to the coordinate size', () => {
    const r = Buffer.alloc(31, 0x11); // a 31-byte r (leading zero octet dropped by DER)
    const s = Buffer.from([0x05]); // a tiny s
    const out = derToJoseSignature(der(r, s), 'ES256');
    expect(out).toHaveLength(64);
    expect(out.subarray(0, 32)).toEqual(Buffer.concat([Buffer.alloc(1), r]));
    expect(out.subarray(32)).toEqual(Buffer.concat([Buffer.alloc(31), s]));
  });

  it('drops the 0x00 sign octet of a high-bit integer', () => {
    const r = Buffer.alloc(48, 0xff);
    const s = Buffer.alloc(48, 0x80);
    const out = derToJoseSignature(
      der(Buffer.concat([Buffer.alloc(1), r]), Buffer.concat([Buffer.alloc(1), s]), true),
      'ES384',
    );
    expect(out).toEqual(Buffer.concat([r, s]));
  });

  it('refuses non-DER input and integers longer than the curve', () => {
    expect(() => derToJoseSignature(Buffer.from([0x31, 0x00]), 'ES256')).toThrow(TypeError);
    expect(() => derToJoseSignature(Buffer.from([0x30, 0x02, 0x04, 0x00]), 'ES256')).toThrow(TypeError);
    expect(() => derToJoseSignature(der(Buffer.alloc(33, 0x01), Buffer.from([1])), 'ES256')).toThrow(/too long/);
  });

  it('matches what node produces as ieee-p1363, over many real signatures of both curves', () => {
    for (const curve of ['P-256', 'P-384'] as const) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      const hash = curve === 'P-256' ? 'sha256' : 'sha384';
      for (let i = 0; i < 300; i++) {
        const data = Buffer.from(`message ${i}`);
        const jose = derToJoseSignature(
          cryptoSign(hash, data, { key: privateKey, dsaEncoding: 'der' }),
          curve === 'P-256' ? 'ES256' : 'ES384',
        );
        expect(cryptoVerify(hash, data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      }
    }
  });
});
