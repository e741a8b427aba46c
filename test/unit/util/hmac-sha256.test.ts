import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hmacSha256Hex } from '../../../src/util/hmac-sha256.js';

const ref = (key: Buffer, msg: string): string => createHmac('sha256', key).update(msg, 'utf8').digest('hex');

describe('hmacSha256Hex', () => {
  // RFC 4231 §4.2, §4.3, §4.7 (test cases 1, 2 and 6: a key longer than the block).
  it('matches the RFC 4231 vectors', () => {
    expect(hmacSha256Hex(Buffer.alloc(20, 0x0b), 'Hi There')).toBe(
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    );
    expect(hmacSha256Hex(Buffer.from('Jefe'), 'what do ya want for nothing?')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    expect(hmacSha256Hex(Buffer.alloc(131, 0xaa), 'Test Using Larger Than Block-Size Key - Hash Key First')).toBe(
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    );
  });

  it('equals createHmac for keys of 0–200 octets and messages of any length, non-ASCII included', () => {
    const alphabet = 'aZ09 {}":,\n\u00e9\u4e2d\ud83d\ude00';
    for (let n = 0; n < 400; n++) {
      const key = randomBytes(n % 201);
      let msg = '';
      const len = (n * 37) % 3000;
      for (let i = 0; i < len; i++) msg += alphabet[(i * 7 + n) % alphabet.length];
      expect(hmacSha256Hex(key, msg), `key ${key.length} msg ${len}`).toBe(ref(key, msg));
    }
  });

  it('separates keys that differ only past the block or by zero padding', () => {
    // A 64-octet key is used as it is, a 65-octet one hashed first: both sides of the boundary.
    const k64 = randomBytes(64);
    const k65 = Buffer.concat([k64, Buffer.from([1])]);
    expect(hmacSha256Hex(k64, 'm')).toBe(ref(k64, 'm'));
    expect(hmacSha256Hex(k65, 'm')).toBe(ref(k65, 'm'));
    expect(hmacSha256Hex(k65, 'm')).not.toBe(hmacSha256Hex(k64, 'm'));
  });
});
