/**
 * Issue #11 item 9c: RFC 7515 §4.1.11 — a JWS whose `crit` names extensions the recipient does
 * not understand must be rejected. Sigil understands none, so any `crit` is refused, with the
 * caller's code: bad_request on the issuer, response_invalid on the agent.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { b64u, parseJws, signJwsWithKey, verifyJws, type Jws } from '../../../src/protocol/jws.js';

const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** A correctly signed JWS whose protected header is `extra` on top of alg/typ. */
function signedWith(extra: Record<string, unknown>): Jws {
  const plain = signJwsWithKey(privateKey, 'ES256', 't', { a: 1 });
  const header = { ...JSON.parse(b64u.decode(plain.protected).toString('utf8')), ...extra };
  const protectedB64 = b64u.encode(JSON.stringify(header));
  const signature = b64u.encode(
    sign('sha256', Buffer.from(`${protectedB64}.${plain.payload}`, 'ascii'), {
      key: privateKey,
      dsaEncoding: 'ieee-p1363',
    }),
  );
  return { protected: protectedB64, payload: plain.payload, signature };
}

describe('JWS crit (RFC 7515 §4.1.11)', () => {
  it('a JWS without crit parses and verifies', () => {
    const j = signedWith({});
    const { header } = parseJws(j);
    expect(verifyJws(j, header, publicKey).payload).toEqual({ a: 1 });
  });

  for (const crit of [['exp'], ['b64'], [], 'exp', null]) {
    it(`refuses crit=${JSON.stringify(crit)} even though the signature is valid`, () => {
      const j = signedWith({ crit, exp: 1, b64: true });
      expect(() => parseJws(j)).toThrow(
        expect.objectContaining({ code: 'bad_request', message: expect.stringMatching(/crit/) }),
      );
      expect(() => parseJws(j, 'response_invalid')).toThrow(
        expect.objectContaining({ code: 'response_invalid', message: expect.stringMatching(/crit/) }),
      );
    });
  }
});
