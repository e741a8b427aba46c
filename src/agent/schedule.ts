/**
 * When to renew and how long to wait after a failure.
 *
 * Renewal at a fraction of the lifetime (default 1/2) with ±10% jitter, so a fleet issued at
 * the same moment does not renew in lockstep. Retries use capped exponential backoff with
 * "full jitter" (uniform in [floor, min(cap, base·2^n)]): agents that lost the issuer together
 * spread out instead of reconnecting in waves.
 */
export const RETRY_BASE_MS = 1_000;
export const RETRY_CAP_MS = 5 * 60_000;
/** Never retry sooner than this: full jitter can draw ~0, which would be a busy loop. */
export const RETRY_FLOOR_MS = 250;

export function renewAt(
  issuedAt: number,
  notAfter: number,
  fraction: number,
  rand: () => number = Math.random,
): number {
  const lifetime = Math.max(0, notAfter - issuedAt);
  const jitter = 0.9 + 0.2 * rand();
  return issuedAt + Math.round(lifetime * fraction * jitter);
}

export function backoffDelay(failures: number, rand: () => number = Math.random, cap = RETRY_CAP_MS): number {
  const exp = Math.min(cap, RETRY_BASE_MS * 2 ** Math.min(failures, 30));
  return RETRY_FLOOR_MS + Math.round(rand() * Math.max(0, exp - RETRY_FLOOR_MS));
}
