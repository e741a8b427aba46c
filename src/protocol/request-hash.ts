/**
 * The hash that identifies one signed request: hex SHA-256 of its JWS Signing Input,
 * `BASE64URL(protected) || '.' || BASE64URL(payload)` (RFC 7515 §5.1 step 5).
 *
 * Why the signing input and not only the payload: the protected header names the signer (x5c,
 * alg). A payload hash alone let anyone holding *some* SVID re-sign a victim's payload and
 * collect the victim's stored answer, or a signed refusal bound to the victim's request
 * (issue #11). The issuer keys idempotent replays on this hash (server/ops/respond.ts) and binds
 * signed refusals to it (protocol/messages.ts ErrorResponsePayload.request_hash); the agent
 * compares it with what it sent (protocol/verify-response.ts).
 */
import { hash } from 'node:crypto';

// One-shot: no Hash object per request for the GC's weak-handle pass (issue #14). 'latin1' is what
// Hash#update's 'ascii' encoded (one octet per UTF-16 unit), so the hash of any string is unchanged.
export function requestHash(envelope: { protected: string; payload: string }): string {
  return hash('sha256', Buffer.from(`${envelope.protected}.${envelope.payload}`, 'latin1'), 'hex');
}
