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

/** A request id: 128 random bits, base64url (22 chars). */
export function newRequestId(): string {
  return randomBytes(16).toString('base64url');
}
