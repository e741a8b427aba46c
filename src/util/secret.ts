import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A random secret of `bytes` (≥ 16, i.e. ≥ 128 bits) as base64url. */
export function randomSecret(bytes = 32): string {
  if (bytes < 16) throw new TypeError('secrets must have at least 128 bits');
  return randomBytes(bytes).toString('base64url');
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Constant-time equality of two hex digests (or any strings of equal expected length).
 * Length differences return false without an early exit on content.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/**
 * A request id: 16 octets, base64url (22 chars) — the current millisecond in the first 6, then
 * 80 random bits. The issuer keys its idempotency records by request id (a unique index): random
 * ids wrote a leaf page of that index at a random place per request, ids that begin with the time
 * land beside the ids of the same seconds (issue #14, docs/performance.md). Still unguessable (80
 * bits; a request id is a name, not a secret: the issuer binds answers to the request's hash and
 * signer). The time is already in the request (`timestamp`). Outside 0 … 2⁴⁸ ms (a test clock):
 * 128 random bits, as before.
 */
export function newRequestId(now: number = Date.now()): string {
  const id = randomBytes(16);
  if (Number.isSafeInteger(now) && now >= 0 && now < 2 ** 48) id.writeUIntBE(now, 0, 6);
  return id.toString('base64url');
}
