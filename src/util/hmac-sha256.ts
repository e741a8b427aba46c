/**
 * HMAC-SHA-256 (RFC 2104; FIPS 198-1) built from one-shot `crypto.hash` calls.
 *
 * Why not `createHmac`: every call makes an Hmac, a native object that V8 frees from a weak
 * callback inside its GC pause. The issuer chains one audit row per request, so at ~2,000
 * renewals/s the audit HMACs that live past a scavenge were part of the weak-handle pass that
 * makes most of a major GC's pause (issue #14, docs/performance.md "Session 10"). One-shot hashes
 * leave nothing behind but pooled Buffers. The construction is the standard one:
 * H((K' ⊕ opad) ‖ H((K' ⊕ ipad) ‖ m)), K' = K zero-padded to the 64-octet block, or H(K) first
 * when K is longer than a block. test/unit/util/hmac-sha256.test.ts holds it equal to createHmac
 * (RFC 4231 vectors, random keys of 0–200 octets, non-ASCII messages).
 */
import { hash } from 'node:crypto';

/** SHA-256's block size in octets (FIPS 180-4 §1). */
const BLOCK = 64;
const IPAD = 0x36;
const OPAD = 0x5c;

/** Hex HMAC-SHA-256 of the UTF-8 encoding of `message` under `key`. */
export function hmacSha256Hex(key: Buffer, message: string): string {
  const k = key.length > BLOCK ? hash('sha256', key, 'buffer') : key;
  // Buffer's default encoding is UTF-8, for the length and the write alike.
  const inner = Buffer.allocUnsafe(BLOCK + Buffer.byteLength(message));
  const outer = Buffer.allocUnsafe(BLOCK + 32);
  for (let i = 0; i < BLOCK; i++) {
    const b = k[i] ?? 0; // zero padding past the key's end
    inner[i] = b ^ IPAD;
    outer[i] = b ^ OPAD;
  }
  inner.write(message, BLOCK);
  hash('sha256', inner, 'buffer').copy(outer, BLOCK);
  return hash('sha256', outer, 'hex');
}
