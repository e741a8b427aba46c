/**
 * The challenge round, host side: a join method's `attest` returned `{ challenge }`, so store a
 * single-use challenge bound to this request id and key, and answer with it signed like any
 * response: `{ v, op: 'join', request_id, issued_at, challenge: { challenge_id, method, nonce,
 * expires_at, data } }` (protocol/messages.ts JoinChallenge).
 *
 * Nothing else is stored: the idempotency record is written only when the join completes, so
 * resending the first request simply yields a new challenge. Challenges live in the database
 * (not in memory), so several issuers on one database serve one join between them.
 */
import { randomBytes } from 'node:crypto';
import { challengeKeyHash, MAX_CHALLENGE_TTL_MS } from '../../join/challenge.js';
import type { ChallengeRequired } from '../../join/types.js';
import type { Jws } from '../../protocol/jws.js';
import { PROTOCOL_VERSION, type ChallengePayload } from '../../protocol/messages.js';
import type { IssuerContext } from '../issuer.js';
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
