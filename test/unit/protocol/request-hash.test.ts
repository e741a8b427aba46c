import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { requestHash } from '../../../src/protocol/request-hash.js';

// The form requestHash had before it became one-shot (issue #14): stored idempotency rows and
// agents of earlier versions compare against it, so it must not change for any input.
const before = (e: { protected: string; payload: string }): string =>
  createHash('sha256').update(e.protected, 'ascii').update('.').update(e.payload, 'ascii').digest('hex');

describe('requestHash', () => {
  it('is SHA-256 of the JWS signing input', () => {
    expect(requestHash({ protected: 'eyJhbGciOiJFUzI1NiJ9', payload: 'e30' })).toBe(
      createHash('sha256').update('eyJhbGciOiJFUzI1NiJ9.e30').digest('hex'),
    );
  });

  it('hashes every string as before, non-base64url and non-ASCII included', () => {
    const chars = 'Ab0-_.=+/ \u00ff\u0100\u00e9\u4e2d\ud83d';
    for (let n = 0; n < 300; n++) {
      let p = '';
      let q = '';
      for (let i = 0; i < n % 50; i++) p += chars[(i * 5 + n) % chars.length];
      for (let i = 0; i < (n * 13) % 900; i++) q += chars[(i * 3 + n) % chars.length];
      expect(requestHash({ protected: p, payload: q })).toBe(before({ protected: p, payload: q }));
    }
  });
});
