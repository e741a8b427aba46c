/**
 * The challenge round, host side (join/challenge.ts has the method side). The host owns the
 * whole lifecycle, so that no method can forget a step: it issues the challenge, opens it before
 * the method sees the answer ({@link openChallenge}) and uses it up inside the issuing
 * transaction ({@link consumeChallenge}).
 *
 * Issuing: a join method's `attest` returned `{ challenge }`, so store a
 * single-use challenge bound to this request id and key, and answer with it signed like any
 * response: `{ v, op: 'join', request_id, issued_at, challenge: { challenge_id, method, nonce,
 * expires_at, data } }` (protocol/messages.ts JoinChallenge).
 *
 * Nothing else is stored: the idempotency record is written only when the join completes, so
 * resending the first request simply yields a new challenge. Challenges live in the database
 * (not in memory), so several issuers on one database serve one join between them.
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../errors.js';
import {
  CHALLENGE_ID_RE,
  challengeKeyHash,
  MAX_CHALLENGE_TTL_MS,
  type AnsweredChallenge,
} from '../../join/challenge.js';
import type { ChallengeRequired } from '../../join/types.js';
import type { Jws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION, type ChallengePayload } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
import type { ChallengeStore } from '../store/types.js';
import { signResponse } from './respond.js';

/** Expired challenges are kept this long, so a late replay gets `challenge_reused`/`expired`, not `invalid`. */
const KEEP_EXPIRED_MS = 60 * 60_000;

export async function issueChallenge(
  ctx: IssuerContext,
  method: string,
  requestId: string,
  spkiDer: Buffer,
  ch: ChallengeRequired['challenge'],
): Promise<Jws> {
  const now = ctx.now();
  const ttl = Math.max(1_000, Math.min(ch.ttlMs ?? MAX_CHALLENGE_TTL_MS, MAX_CHALLENGE_TTL_MS));
  const id = randomBytes(16).toString('base64url');
  const nonce = randomBytes(32);
  await ctx.stores.withWriteTx(async (tx) => {
    await tx.challenges.prune(now - KEEP_EXPIRED_MS);
    await tx.challenges.create({
      id,
      method,
      requestId,
      spkiHash: challengeKeyHash(spkiDer),
      nonce,
      state: ch.state ?? {},
      createdAt: now,
      expiresAt: now + ttl,
    });
  });
  ctx.log.debug({ op: 'join', method, request_id: requestId, expires_in_ms: ttl }, 'join challenge issued');
  const payload: ChallengePayload = {
    v: PROTOCOL_VERSION,
    op: 'join',
    request_id: requestId,
    issued_at: now,
    challenge: {
      challenge_id: id,
      method,
      nonce: nonce.toString('base64url'),
      expires_at: now + ttl,
      data: ch.data ?? {},
    },
  };
  return signResponse(ctx, JSON.stringify(payload));
}

/** Step 1: find the challenge `id` and check it belongs to this join (method, request id, key). */
export async function openChallenge(
  store: Pick<ChallengeStore, 'get'>,
  id: unknown,
  join: { method: string; requestId: string; spkiDer: Buffer; now: number },
): Promise<AnsweredChallenge> {
  const rec = typeof id === 'string' && CHALLENGE_ID_RE.test(id) ? await store.get(id) : undefined;
  if (!rec)
    throw new SigilError(
      'challenge_invalid',
      'the challenge id is not known to this issuer (it may have expired long ago); start the join again',
    );
  if (rec.usedAt !== null)
    throw new SigilError(
      'challenge_reused',
      `the challenge was already answered at ${new Date(rec.usedAt).toISOString()}; a challenge answers one join only`,
    );
  if (rec.expiresAt <= join.now)
    throw new SigilError(
      'challenge_expired',
      `the challenge expired at ${new Date(rec.expiresAt).toISOString()}; start the join again`,
    );
  if (rec.method !== join.method)
    throw new SigilError(
      'challenge_invalid',
      `the challenge was issued by the ${rec.method} join method, not ${join.method}`,
    );
  if (rec.requestId !== join.requestId)
    throw new SigilError(
      'challenge_invalid',
      'the challenge was issued to another join request (answer with the same request id)',
    );
  if (rec.spkiHash !== challengeKeyHash(join.spkiDer))
    throw new SigilError(
      'challenge_invalid',
      'the challenge was issued for another identity key (answer with the same CSR key)',
    );
  return { id: rec.id, nonce: rec.nonce, state: rec.state, createdAt: rec.createdAt, expiresAt: rec.expiresAt };
}

/** Step 2, inside the issuing transaction: use the challenge up (`challenge_reused` when a concurrent answer won). */
export async function consumeChallenge(store: Pick<ChallengeStore, 'consume'>, id: string, now: number): Promise<void> {
  const r = await store.consume(id, now);
  if (!r.ok)
    throw new SigilError(
      r.reason,
      r.reason === 'challenge_reused' ? 'the challenge was already answered (a concurrent join won)' : undefined,
    );
}
