/**
 * protocol/answer-key.ts: a secret sealed to the requester's ephemeral P-256 key opens only with
 * that key; the request's answer_key is a public P-256 point and nothing else.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  answerKeyObject,
  answerKeySchema,
  newAnswerKey,
  openWithAnswerKey,
  sealToAnswerKey,
} from '../../../src/protocol/answer-key.js';

describe('answer keys', () => {
  it('a sealed secret opens with the request key only (compact JWE, ECDH-ES + A256GCM)', async () => {
    const mine = newAnswerKey();
    const jwe = await sealToAnswerKey('eyJ.secret.jwt', answerKeyObject(mine.publicJwk), 'JWT');
    expect(jwe.split('.')).toHaveLength(5);
    expect(jwe).not.toContain('secret');
    expect(JSON.parse(Buffer.from(jwe.split('.')[0]!, 'base64url').toString())).toMatchObject({
      alg: 'ECDH-ES',
      enc: 'A256GCM',
      cty: 'JWT',
    });
    expect(await openWithAnswerKey(jwe, mine.privateKey)).toBe('eyJ.secret.jwt');
    await expect(openWithAnswerKey(jwe, newAnswerKey().privateKey)).rejects.toMatchObject({ code: 'response_invalid' });
    // Tampering with the ciphertext is detected (GCM tag), not decrypted to garbage.
    const parts = jwe.split('.');
    parts[3] = Buffer.from(Buffer.from(parts[3]!, 'base64url').map((b, i) => (i === 0 ? b ^ 1 : b))).toString(
      'base64url',
    );
    await expect(openWithAnswerKey(parts.join('.'), mine.privateKey)).rejects.toMatchObject({
      code: 'response_invalid',
    });
  });

  it('answer_key is a public P-256 JWK: a private part, another curve or a point off the curve is refused', () => {
    const { publicJwk } = newAnswerKey();
    expect(answerKeySchema.safeParse(publicJwk).success).toBe(true);
    const d = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }).d;
    expect(answerKeySchema.safeParse({ ...publicJwk, d }).success).toBe(false);
    expect(answerKeySchema.safeParse({ ...publicJwk, crv: 'P-384' }).success).toBe(false);
    const offCurve = { ...publicJwk, y: Buffer.alloc(32, 7).toString('base64url') };
    expect(answerKeySchema.safeParse(offCurve).success).toBe(true);
    expect(() => answerKeyObject(offCurve)).toThrow(expect.objectContaining({ code: 'bad_request' }));
  });
});
