/**
 * parseJws (protocol/jws.ts), the survivors of `npm run mutate:ci` (issue #20): a body that is
 * not an object at all is refused as such, and an x5c with one non-string entry among strings is
 * refused (a check that every entry is a non-string would let it through to the DER reader).
 */
import { describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { b64u, parseJws } from '../../../src/protocol/jws.js';

const header = (h: unknown): string => b64u.encode(JSON.stringify(h));

describe('parseJws', () => {
  it('a body that is a string, a number or true is "expected a JWS object"', () => {
    for (const body of ['protected.payload.signature', 42, true])
      expect(() => parseJws(body)).toThrow(
        new SigilError('bad_request', 'expected a JWS object {protected, payload, signature}'),
      );
  });

  it('attack: an x5c with a number after a certificate string is refused', () => {
    const jws = { protected: header({ alg: 'ES256', typ: 't', x5c: ['MIIB', 5] }), payload: '', signature: '' };
    expect(() => parseJws(jws)).toThrow(
      new SigilError('bad_request', 'JWS x5c must be an array of at most 5 base64 certificates'),
    );
    const ok = { protected: header({ alg: 'ES256', typ: 't', x5c: ['MIIB', 'MIIC'] }), payload: '', signature: '' };
    expect(parseJws(ok).header.x5c).toEqual(['MIIB', 'MIIC']);
  });
});
