/**
 * End-to-end encryption of the secret part of an answer (a JWT-SVID is a bearer secret) for
 * carriers that are not confidential: on MQTT the broker's operator and every agent allowed to
 * read `sigil/v1/resp/+` see the answer bytes (docs/mqtt.md "Credentials over MQTT"). Signing
 * protects integrity only; this protects confidentiality.
 *
 * The agent makes an ephemeral P-256 key per credential request and puts its public JWK in the
 * SIGNED request (`answer_key`), so nobody on the way can swap it (the issuer's idempotency hash
 * covers the whole signing input). The issuer encrypts the secret to it as a compact JWE,
 * ECDH-ES (direct key agreement, a fresh ephemeral issuer key each time, RFC 7518 §4.6) with
 * A256GCM; the agent decrypts with the private half, which never leaves its memory and is
 * dropped with the request.
 *
 * jose is imported inside the two functions that use it: this module comes in through the
 * credential message schemas for every agent, and most agent starts never seal or open a secret
 * (docs/performance.md "Agent footprint").
 */
import { generateKeyPairSync, createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { SigilError } from '../errors.js';

const coordinate = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a 32-byte base64url P-256 coordinate');

/** A public P-256 JWK and nothing else (a private `d` is refused, not ignored). */
export const answerKeySchema = z.strictObject({
  kty: z.literal('EC'),
  crv: z.literal('P-256'),
  x: coordinate,
  y: coordinate,
});
export type AnswerKey = z.infer<typeof answerKeySchema>;

const ALG = 'ECDH-ES';
const ENC = 'A256GCM';

/** The agent's side: a fresh key pair; the public JWK goes into the request. */
export function newAnswerKey(): { publicJwk: AnswerKey; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  return { publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x!, y: jwk.y! }, privateKey };
}

/** The issuer's side, before anything is signed: the requested key must be a point on P-256. */
export function answerKeyObject(jwk: AnswerKey): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    throw new SigilError('bad_request', 'credential request: answer_key is not a P-256 public key');
  }
}

/** Encrypt `secret` to the requester's answer key: a compact JWE (ECDH-ES, A256GCM). */
export async function sealToAnswerKey(secret: string, key: KeyObject, contentType: string): Promise<string> {
  const { CompactEncrypt } = await import('jose');
  return new CompactEncrypt(Buffer.from(secret, 'utf8'))
    .setProtectedHeader({ alg: ALG, enc: ENC, cty: contentType })
    .encrypt(key);
}

/** Decrypt a sealed secret with the request's private answer key; anything else is response_invalid. */
export async function openWithAnswerKey(jwe: string, privateKey: KeyObject): Promise<string> {
  const { compactDecrypt } = await import('jose');
  try {
    const { plaintext } = await compactDecrypt(jwe, privateKey, {
      keyManagementAlgorithms: [ALG],
      contentEncryptionAlgorithms: [ENC],
    });
    return Buffer.from(plaintext).toString('utf8');
  } catch (e) {
    throw new SigilError(
      'response_invalid',
      `the sealed secret in the answer does not open with this request's answer key: ${(e as Error).message}`,
    );
  }
}
