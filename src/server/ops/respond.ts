import { createHash } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { signJwsWithKey, type Jws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION, TYP_RESPONSE, type ErrorResponsePayload, type ResponsePayload } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import type { AuditEvent } from '../store/types.js';

/** Serialise a response payload once; the same string is stored for idempotent replays. */
export function responsePayload<T>(ctx: IssuerContext, op: ResponsePayload<T>['op'], requestId: string | null, result: T): string {
  const p: ResponsePayload<T> = { v: PROTOCOL_VERSION, op, request_id: requestId, issued_at: ctx.now(), result };
  return JSON.stringify(p);
}

/**
 * Inside the issuing transaction: the answer to an agent's request, serialised once, kept for
 * idempotent replays of the same request id, and its audit row — all three or none.
 */
export function recordAnswer<T>(
  ctx: IssuerContext,
  a: { op: 'join' | 'renew' | 'credential'; requestId: string; requestHash: string; result: T; now: number; audit: Omit<AuditEvent, 'action' | 'outcome' | 'actor'> },
): string {
  const json = responsePayload(ctx, a.op, a.requestId, a.result);
  ctx.stores.idempotency.put({ requestId: a.requestId, requestHash: a.requestHash, op: a.op, response: json, createdAt: a.now });
  ctx.stores.audit.append({ action: a.op, outcome: 'ok', actor: 'agent', ...a.audit }, a.now);
  return json;
}

/** Sign a stored or fresh payload with the issuer's serving key (x5c = its chain). */
export function signResponse(ctx: IssuerContext, payloadJson: string): Jws {
  return signJwsWithKey(ctx.server.key, 'ES256', TYP_RESPONSE, payloadJson, ctx.server.chainDer);
}

export const payloadHash = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/**
 * Idempotency: the same request id with the same signed payload gets the stored response;
 * the same id with other content is refused (a buggy or malicious client, never a retry).
 */
export function replayIfSeen(ctx: IssuerContext, requestId: string, hash: string): string | undefined {
  const seen = ctx.stores.idempotency.get(requestId);
  if (!seen) return undefined;
  if (seen.requestHash !== hash) throw new SigilError('request_id_conflict', `request id ${requestId} was already used for a different request`);
  return seen.response;
}

/**
 * A refusal signed like a success (protocol/messages.ts ErrorResponsePayload), for carriers that
 * are untrusted for integrity (MQTT). Never stored: a refusal changes nothing, so a retry of the
 * same request is simply decided again.
 */
export function signErrorResponse(ctx: IssuerContext, op: string, requestId: string | null, requestHash: string | null, e: SigilError): Jws {
  const w = e.toWire();
  const p: ErrorResponsePayload = {
    v: PROTOCOL_VERSION,
    op,
    request_id: requestId,
    request_hash: requestHash,
    issued_at: ctx.now(),
    error: { code: w.code, message: w.message, retryable: w.retryable, ...(w.retryAfterMs !== undefined ? { retry_after_ms: w.retryAfterMs } : {}) },
  };
  return signJwsWithKey(ctx.server.key, 'ES256', TYP_RESPONSE, JSON.stringify(p), ctx.server.chainDer);
}
