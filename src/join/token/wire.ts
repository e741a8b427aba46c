/**
 * `token` join: a one-time bootstrap secret (ARCHITECTURE principle 1 — bootstrap only:
 * single use, short TTL, stored hashed). Over HTTPS the token travels inside TLS to the pinned
 * issuer; the request envelope is signed by the new key, so the token is bound to that key.
 */
import { z } from 'zod';

/** 32 random bytes, base64url: 256 bits, well above the 128-bit floor. */
export const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

export const tokenEvidenceSchema = z.strictObject({
  token: z.string().regex(TOKEN_RE, 'token must be 43 base64url characters (as printed by `sigil ctl token create`)'),
});
export type TokenEvidence = z.infer<typeof tokenEvidenceSchema>;
