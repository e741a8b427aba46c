/**
 * Signed envelopes: JWS in the flattened JSON serialization (RFC 7515 §7.2.2), ES256/ES384 only.
 *
 * Why JWS: every Sigil message must be self-contained and verifiable end to end, whatever
 * carries it (HTTPS today, an untrusted MQTT broker later). The signer's certificate chain
 * travels in the `x5c` header (RFC 7515 §4.1.6: base64 DER, leaf first), so a verifier needs
 * only its trust bundle.
 */
import { createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { SigilError, type ErrorCode } from '../errors.js';
import type { SignatureAlgorithm, Signer } from '../keystore/signer.js';

export interface Jws {
  protected: string;
  payload: string;
  signature: string;
}

export interface JwsHeader {
  alg: SignatureAlgorithm;
  typ: string;
  /** Base64 (not url) DER certificates, leaf first. */
  x5c?: string[];
}

export interface VerifiedJws<T = unknown> {
  header: JwsHeader;
  payload: T;
  /** The exact payload bytes that were signed, for hashing (idempotency). */
  payloadBytes: Buffer;
}

const COORD_LEN: Record<SignatureAlgorithm, number> = { ES256: 32, ES384: 48 };
const HASH: Record<SignatureAlgorithm, string> = { ES256: 'sha256', ES384: 'sha384' };

export const b64u = {
  encode: (b: Buffer | string): string => Buffer.from(b).toString('base64url'),
  decode: (s: string): Buffer => Buffer.from(s, 'base64url'),
};

/** ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) → fixed-width r||s, as JWS requires (RFC 7518 §3.4). */
export function derToJoseSignature(der: Buffer, alg: SignatureAlgorithm): Buffer {
  const n = COORD_LEN[alg];
  let i = 0;
  const expect = (tag: number): number => {
    if (der[i++] !== tag) throw new TypeError('not an ECDSA DER signature');
    let len = der[i++]!;
    if (len & 0x80) {
      const k = len & 0x7f;
      len = 0;
      for (let j = 0; j < k; j++) len = (len << 8) | der[i++]!;
    }
    return len;
  };
  expect(0x30);
  const out = Buffer.alloc(2 * n);
  for (let part = 0; part < 2; part++) {
    const len = expect(0x02);
    let v = der.subarray(i, i + len);
    i += len;
    while (v.length > n && v[0] === 0) v = v.subarray(1);
    if (v.length > n) throw new TypeError('ECDSA integer too long for curve');
    v.copy(out, part * n + (n - v.length));
  }
  return out;
}

export async function signJws(signer: Signer, typ: string, payload: unknown, x5c?: Buffer[]): Promise<Jws> {
  const header: JwsHeader = { alg: signer.algorithm, typ };
  if (x5c) header.x5c = x5c.map((d) => d.toString('base64'));
  const protectedB64 = b64u.encode(JSON.stringify(header));
  const payloadB64 = b64u.encode(JSON.stringify(payload));
  const der = await signer.sign(Buffer.from(`${protectedB64}.${payloadB64}`, 'ascii'));
  return {
    protected: protectedB64,
    payload: payloadB64,
    signature: b64u.encode(derToJoseSignature(der, signer.algorithm)),
  };
}

/** Parse the envelope's shape and header without verifying; `code` is used for every refusal. */
export function parseJws(input: unknown, code: ErrorCode = 'bad_request'): { jws: Jws; header: JwsHeader } {
  if (!input || typeof input !== 'object')
    throw new SigilError(code, 'expected a JWS object {protected, payload, signature}');
  const o = input as Record<string, unknown>;
  for (const k of ['protected', 'payload', 'signature'] as const) {
    if (typeof o[k] !== 'string' || !/^[A-Za-z0-9_-]*$/.test(o[k] as string)) {
      throw new SigilError(code, `JWS member "${k}" must be a base64url string`);
    }
  }
  let header: unknown;
  try {
    header = JSON.parse(b64u.decode(o.protected as string).toString('utf8'));
  } catch {
    throw new SigilError(code, 'JWS protected header is not JSON');
  }
  const h = header as Partial<JwsHeader>;
  if (!h || typeof h !== 'object' || (h.alg !== 'ES256' && h.alg !== 'ES384')) {
    // Refusing every other alg (incl. "none" and HMAC) closes alg-confusion attacks up front.
    throw new SigilError(code, 'JWS alg must be ES256 or ES384');
  }
  if (typeof h.typ !== 'string') throw new SigilError(code, 'JWS typ missing');
  // RFC 7515 §4.1.11: a recipient that does not understand every extension listed in `crit` must
  // reject the JWS. Sigil defines and understands none, so any `crit` (even an empty or malformed
  // one, which §4.1.11 forbids producing) is refused rather than ignored.
  if (Object.prototype.hasOwnProperty.call(h, 'crit'))
    throw new SigilError(code, 'JWS crit header names extensions this verifier does not understand (RFC 7515 §4.1.11)');
  if (h.x5c !== undefined && (!Array.isArray(h.x5c) || h.x5c.length > 5 || h.x5c.some((c) => typeof c !== 'string'))) {
    throw new SigilError(code, 'JWS x5c must be an array of at most 5 base64 certificates');
  }
  return {
    jws: { protected: o.protected as string, payload: o.payload as string, signature: o.signature as string },
    header: h as JwsHeader,
  };
}

export function x5cDers(header: JwsHeader): Buffer[] {
  return (header.x5c ?? []).map((c) => Buffer.from(c, 'base64'));
}

/**
 * Verify the signature with `key` and return the decoded payload. The key's curve must match
 * the header's alg (no downgrade from P-384 to P-256 or vice versa).
 */
export function verifyJws<T = unknown>(
  jws: Jws,
  header: JwsHeader,
  key: KeyObject | Buffer,
  code: ErrorCode = 'signature_invalid',
): VerifiedJws<T> {
  const pub = Buffer.isBuffer(key) ? createPublicKey({ key, format: 'der', type: 'spki' }) : key;
  const curve = pub.asymmetricKeyDetails?.namedCurve;
  const want = header.alg === 'ES256' ? 'prime256v1' : 'secp384r1';
  if (pub.asymmetricKeyType !== 'ec' || curve !== want) {
    throw new SigilError(code, `JWS alg ${header.alg} does not match the signing key`);
  }
  const sig = b64u.decode(jws.signature);
  if (sig.length !== 2 * COORD_LEN[header.alg]) throw new SigilError(code, 'JWS signature has the wrong length');
  const ok = cryptoVerify(
    HASH[header.alg]!,
    Buffer.from(`${jws.protected}.${jws.payload}`, 'ascii'),
    { key: pub, dsaEncoding: 'ieee-p1363' },
    sig,
  );
  if (!ok) throw new SigilError(code, 'JWS signature does not verify');
  const payloadBytes = b64u.decode(jws.payload);
  let payload: T;
  try {
    payload = JSON.parse(payloadBytes.toString('utf8')) as T;
  } catch {
    throw new SigilError('bad_request', 'JWS payload is not JSON');
  }
  return { header, payload, payloadBytes };
}

/**
 * The protected header as it travels (base64url of its JSON), for a signer that signs many
 * messages with one key and chain: encoding the x5c chain costs more than hashing it, so the
 * issuer encodes it once per serving identity (server/issuer.ts) and signs with signJwsWithHeader.
 */
export function encodeJwsHeader(alg: SignatureAlgorithm, typ: string, x5c?: Buffer[]): string {
  const header: JwsHeader = { alg, typ };
  if (x5c) header.x5c = x5c.map((d) => d.toString('base64'));
  return b64u.encode(JSON.stringify(header));
}

/**
 * Synchronous signing with an in-memory key, for the issuer's responses (its signing key is a
 * software key it holds; keeping this sync lets a response be built inside a store transaction).
 */
export function signJwsWithKey(
  key: KeyObject,
  alg: SignatureAlgorithm,
  typ: string,
  payload: unknown,
  x5c?: Buffer[],
): Jws {
  return signJwsWithHeader(key, alg, encodeJwsHeader(alg, typ, x5c), payload);
}

/**
 * signJwsWithKey with a header already encoded by encodeJwsHeader; `alg` must be the one in it
 * (the caller encoded both from the same key, so they cannot disagree).
 */
export function signJwsWithHeader(
  key: KeyObject,
  alg: SignatureAlgorithm,
  protectedB64: string,
  payload: unknown,
): Jws {
  const payloadB64 = b64u.encode(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const sig = cryptoSign(HASH[alg]!, Buffer.from(`${protectedB64}.${payloadB64}`, 'ascii'), {
    key,
    dsaEncoding: 'ieee-p1363',
  });
  return { protected: protectedB64, payload: payloadB64, signature: b64u.encode(sig) };
}
