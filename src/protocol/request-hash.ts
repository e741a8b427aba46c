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
import { createHash } from 'node:crypto';

export function requestHash(envelope: { protected: string; payload: string }): string {
  return createHash('sha256')
    .update(envelope.protected, 'ascii')
    .update('.')
    .update(envelope.payload, 'ascii')
    .digest('hex');
}
