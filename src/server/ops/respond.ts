import { createHash } from 'node:crypto';
import { SigilError } from '../../errors.js';
import { signJwsWithHeader, type Jws } from '../../protocol/jws.js';
import { requestHash } from '../../protocol/request-hash.js';
import {
  PROTOCOL_VERSION,
  type ErrorResponsePayload,
  type RequestOp,
  type ResponsePayload,
} from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import type { AuditEvent, IdempotencyRecord, Stores, TxStores } from '../store/types.js';

/** Serialise a response payload once; the same string is stored for idempotent replays. */
export function responsePayload<T>(
  ctx: IssuerContext,
  op: ResponsePayload<T>['op'],
  requestId: string | null,
  result: T,
  requestHash?: string,
): string {
  const p: ResponsePayload<T> =
    requestHash === undefined
      ? { v: PROTOCOL_VERSION, op, request_id: requestId, issued_at: ctx.now(), result }
      : { v: PROTOCOL_VERSION, op, request_id: requestId, request_hash: requestHash, issued_at: ctx.now(), result };
  return JSON.stringify(p);
}

/**
 * Inside the issuing transaction `tx`: the answer to an agent's request, serialised once, kept
 * for idempotent replays of the same request id (without the CA certificates it repeats:
 * ./stored-answer.ts; signResponse puts them back), and its audit row — all three or none.
 */
export async function recordAnswer<T>(
  ctx: IssuerContext,
  tx: TxStores,
  a: {
    op: RequestOp;
    request: SignedRequest;
    result: T;
    now: number;
    audit: Omit<AuditEvent, 'action' | 'outcome' | 'actor'>;
  },
): Promise<string> {
  const json = responsePayload(ctx, a.op, a.request.requestId, a.result, a.request.hash);
  const row = {
    requestId: a.request.requestId,
    requestHash: a.request.hash,
    signer: signerTag(a.request.signer),
    op: a.op,
    createdAt: a.now,
  };
  await tx.idempotency.put({ ...row, response: ctx.answerSeal.seal(row, ctx.storedAnswers.compact(json)) });
  await tx.audit.append({ action: a.op, outcome: 'ok', actor: 'agent', ...a.audit }, a.now);
  return json;
}

/**
 * Sign a fresh payload, or a stored one (replayIfSeen) expanded back to the exact JSON text
 * first answered (./stored-answer.ts), with the issuer's serving key (x5c = its chain; the header
 * is encoded once per serving identity: issuer.ts ServerIdentity.responseHeader).
 */
export function signResponse(ctx: IssuerContext, payloadJson: string): Jws {
  const json = ctx.storedAnswers.expand(payloadJson);
  return signJwsWithHeader(ctx.server.key, 'ES256', ctx.server.responseHeader, json);
}

/** Who signed a request: stored with its answer, so that a replay goes only to that signer. */
export interface RequestSigner {
  /** sha256:<hex> of the signing key's SubjectPublicKeyInfo. */
  keyHash: string;
  /** The instance whose identity signed it (renew, credential); absent for a join, signed by its new key. */
  instanceId?: string;
}

/** The signed request an answer is (or will be) stored for. */
export interface SignedRequest {
  requestId: string;
  /** protocol/request-hash.ts: the whole JWS signing input, so the signer's header is covered too. */
  hash: string;
  signer: RequestSigner;
  /** Hex SHA-256 of the payload bytes alone: how answers stored before migration 4 are keyed. */
  legacyHash: string;
}

export function signedRequest(
  jws: { protected: string; payload: string },
  payloadBytes: Buffer,
  requestId: string,
  signer: RequestSigner,
): SignedRequest {
  let legacy: string | undefined;
  return {
    requestId,
    hash: requestHash(jws),
    signer,
    // Needed only to replay an answer stored before migration 4 (legacyReplay): hashed on first
    // use, not for every request (issue #14: one SHA-256 of the payload less per renewal).
    get legacyHash(): string {
      return (legacy ??= createHash('sha256').update(payloadBytes).digest('hex'));
    },
  };
}

const signerTag = (s: RequestSigner): string => (s.instanceId ? `${s.instanceId} ${s.keyHash}` : s.keyHash);

/**
 * Idempotency, bound to the signer (ARCHITECTURE "Answers are bound to their signer"): the same
 * request id with the same signed input *from the same signer* gets the stored answer; anything
 * else under that id is refused `request_id_conflict` (audited by the caller's refusal path) —
 * a buggy client, or someone who saw the request (an MQTT broker, a peer) re-signing it to
 * collect the answer. The hash already covers the signer's x5c header; the signer column makes
 * the rule explicit and survives any future change of what the header carries. `stores`: the
 * issuer's for the early check, the transaction's for the re-check inside it.
 */
export async function replayIfSeen(
  ctx: IssuerContext,
  stores: TxStores,
  r: SignedRequest,
  opts: ReplayOptions = {},
): Promise<string | undefined> {
  const seen = await stores.idempotency.get(r.requestId);
  if (!seen) return undefined;
  // A credential answered before a compromise rotation withdrew the key that signed it (the
  // caller passes when): never handed out again. The client asks anew and gets the new key's.
  if (opts.answeredAfter !== undefined && seen.createdAt <= opts.answeredAfter)
    throw new SigilError(
      'signing_key_withdrawn',
      `the answer stored for request id ${r.requestId} was signed before a compromise rotation withdrew the key that signed it; send a new request`,
    );
  // The row is the database's word; its seal says the issuer wrote it (./answer-seal.ts).
  seen.response = ctx.answerSeal.open(seen, ctx.now());
  const response = seen.signer === '' ? legacyReplay(seen.requestHash, seen.response, r) : boundReplay(seen, r);
  if (opts.answerCheck) await opts.answerCheck(response, stores);
  // Read outside a transaction, the row may be committed but not yet on disk (a store that
  // flushes after COMMIT: store/sqlite/wal-sync.ts); inside one, the transaction's own commit waits.
  await (stores as Partial<Stores>).whenDurable?.();
  return response;
}

/** What replayIfSeen's caller adds to the stored answer's own checks. */
export interface ReplayOptions {
  /** Refuse an answer stored at or before this time (a compromise rotation withdrew the key that signed it). */
  answeredAfter?: number;
  /**
   * Look inside the answer before it is handed out again, once it is known to be this signer's
   * (../credentials/stored-answer-keys.ts: the signing keys it carries must still be published).
   */
  answerCheck?: (response: string, stores: TxStores) => Promise<void>;
}

function boundReplay(seen: IdempotencyRecord, r: SignedRequest): string {
  if (seen.signer !== signerTag(r.signer)) {
    throw new SigilError(
      'request_id_conflict',
      `request id ${r.requestId} was already answered to another signer; this request is refused and recorded`,
    );
  }
  if (seen.requestHash !== r.hash)
    throw new SigilError('request_id_conflict', `request id ${r.requestId} was already used for a different request`);
  return seen.response;
}

/**
 * An answer stored before migration 4 (no signer, payload-only hash). A lost answer from just
 * before an upgrade must still be found — a refusal would make the agent send a new request
 * with its old credential and lock itself (generation_mismatch) — but only for the instance the
 * answer belongs to. A join's payload names its own key (the CSR that verified the envelope),
 * so its payload hash already binds the signer.
 */
function legacyReplay(storedHash: string, response: string, r: SignedRequest): string {
  if (storedHash !== r.legacyHash)
    throw new SigilError('request_id_conflict', `request id ${r.requestId} was already used for a different request`);
  if (r.signer.instanceId !== undefined) {
    let answered: unknown;
    try {
      answered = (JSON.parse(response) as { result?: { instance_id?: unknown } }).result?.instance_id;
    } catch {
      answered = undefined;
    }
    if (answered !== undefined && answered !== r.signer.instanceId) {
      throw new SigilError(
        'request_id_conflict',
        `request id ${r.requestId} was already answered to another signer; this request is refused and recorded`,
      );
    }
  }
  return response;
}

/**
 * A refusal signed like a success (protocol/messages.ts ErrorResponsePayload), for carriers that
 * are untrusted for integrity (MQTT). Never stored: a refusal changes nothing, so a retry of the
 * same request is simply decided again.
 */
export function signErrorResponse(
  ctx: IssuerContext,
  op: string,
  requestId: string | null,
  requestHash: string | null,
  e: SigilError,
): Jws {
  const w = e.toWire();
  const p: ErrorResponsePayload = {
    v: PROTOCOL_VERSION,
    op,
    request_id: requestId,
    request_hash: requestHash,
    issued_at: ctx.now(),
    error: {
      code: w.code,
      message: w.message,
      retryable: w.retryable,
      ...(w.retryAfterMs !== undefined ? { retry_after_ms: w.retryAfterMs } : {}),
    },
  };
  return signJwsWithHeader(ctx.server.key, 'ES256', ctx.server.responseHeader, JSON.stringify(p));
}
