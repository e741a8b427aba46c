/**
 * `token` join: a one-time bootstrap secret (ARCHITECTURE principle 1 — bootstrap only:
 * single use, short TTL). The token itself never leaves the machine and is never stored:
 *
 *   seed   = HKDF-SHA256(ikm = token, salt = "sigil-token-v1", info = "join key", 32 bytes)
 *   key    = Ed25519 key from seed (RFC 8032: any 32 bytes are a valid seed)
 *   issuer stores sha256(public key) as the token's id; nothing secret
 *   agent  sends the public key and an Ed25519 signature over
 *          "sigil token join v1\n" || request_id || "\n" || SPKI of the new identity key
 *
 * So a carrier that sees the request (an MQTT broker, a TLS-terminating proxy) learns nothing
 * it could join with, a leaked issuer database holds no usable token, and the proof is bound
 * to the key being certified and to the request id.
 */
import { createHash, createPrivateKey, createPublicKey, hkdfSync, type KeyObject } from 'node:crypto';
import * as z from '../../util/zod-mini.js';

/** 32 random bytes, base64url: 256 bits, well above the 128-bit floor. */
export const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

export const tokenEvidenceSchema = z.strictObject({
  /** Raw Ed25519 public key (32 bytes), base64url. */
  token_key: z.string().check(z.regex(/^[A-Za-z0-9_-]{43}$/, 'token_key must be a base64url Ed25519 public key')),
  /** Ed25519 signature (64 bytes), base64url. */
  proof: z.string().check(z.regex(/^[A-Za-z0-9_-]{86}$/, 'proof must be a base64url Ed25519 signature')),
});
export type TokenEvidence = z.infer<typeof tokenEvidenceSchema>;

// DER prefixes of Ed25519 PKCS#8 / SPKI (RFC 8410): the key bytes follow.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function tokenKey(token: string): { privateKey: KeyObject; publicRaw: Buffer } {
  const seed = Buffer.from(hkdfSync('sha256', Buffer.from(token, 'utf8'), 'sigil-token-v1', 'join key', 32));
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return { privateKey, publicRaw: spki.subarray(SPKI_PREFIX.length) };
}

export function tokenPublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** The token's id as stored by the issuer: hex SHA-256 of the raw public key. */
export function tokenId(publicRaw: Buffer): string {
  return createHash('sha256').update(publicRaw).digest('hex');
}

export function proofMessage(requestId: string, spkiDer: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`sigil token join v1\n${requestId}\n`, 'utf8'), spkiDer]);
}
