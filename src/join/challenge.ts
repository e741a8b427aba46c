/**
 * The challenge round. A method that wants proof of freshness returns `{ challenge }`
 * (types.ts ChallengeRequired) from `attest`; the host stores a single-use challenge bound to
 * the request id and the new key (server/ops/challenge.ts) and the agent answers with a second
 * join request — same request id, same new key — whose evidence names it (`challenge_id`).
 *
 * The host, not the method, owns the rest of the lifecycle (server/ops/challenge.ts, called by
 * server/ops/join.ts):
 *
 *   1. `openChallenge` before the method sees the answer: the challenge exists, is unused
 *      and unexpired, was issued by this method to this request id for this key (early,
 *      precise refusals). The method gets it as `AttestInput.challenge` (nonce, kept state) and
 *      verifies its answer against them;
 *   2. `consumeChallenge` inside the issuing transaction, whatever the method did: one
 *      conditional UPDATE, so a replayed or concurrent answer is refused (`challenge_reused`) and
 *      a join refused later (locked bot, bad CSR) burns nothing. A method cannot forget it.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';

/** Upper bound on a challenge's life: long enough for a slow TPM or HSM, short enough to be fresh. */
export const MAX_CHALLENGE_TTL_MS = 60_000;

export const CHALLENGE_ID_RE = /^[A-Za-z0-9_-]{22}$/;

/** sha256:<hex> of the new key's SPKI, as challenges record it. */
export function challengeKeyHash(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/** The evidence field that names the challenge an answer answers; its presence makes the evidence an answer. */
export const CHALLENGE_ID_FIELD = 'challenge_id';

export function isChallengeAnswer(evidence: Record<string, unknown>): boolean {
  return CHALLENGE_ID_FIELD in evidence;
}

/** What a method sees of the challenge its evidence answers, opened and checked by the host. */
export interface AnsweredChallenge {
  id: string;
  /** The issuer's 32-byte nonce, sent to the agent. */
  nonce: Buffer;
  /** What the method kept with the challenge (never sent). */
  state: Record<string, unknown>;
  createdAt: number;
  expiresAt: number;
}

/** The challenge an answer answers, as the host opened it (it always does when `challenge_id` is present). */
export function answeredChallenge(input: { challenge?: AnsweredChallenge }): AnsweredChallenge {
  if (input.challenge === undefined)
    throw new SigilError(
      'internal',
      'a challenge answer reached the join method without its challenge (the host opens it)',
    );
  return input.challenge;
}
