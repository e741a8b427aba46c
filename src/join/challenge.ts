/**
 * The challenge round. A method that wants proof of freshness returns `{ challenge }`
 * (types.ts ChallengeRequired) from `attest`; the host stores a single-use challenge bound to
 * the request id and the new key (server/ops/challenge.ts) and the agent answers with a second
 * join request — same request id, same new key — whose evidence names it (`challenge_id`).
 *
 * The host, not the method, owns the rest of the lifecycle (server/ops/join.ts):
 *
 *   1. {@link openChallenge} before the method sees the answer: the challenge exists, is unused
 *      and unexpired, was issued by this method to this request id for this key (early,
 *      precise refusals). The method gets it as `AttestInput.challenge` (nonce, kept state) and
 *      verifies its answer against them;
 *   2. {@link consumeChallenge} inside the issuing transaction, whatever the method did: one
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

/** A stored challenge as the store returns it. */
export interface StoredChallenge {
  id: string;
  method: string;
  requestId: string;
  spkiHash: string;
  nonce: Buffer;
  state: Record<string, unknown>;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
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

export interface ChallengeLookup {
  get(id: string): Promise<StoredChallenge | undefined>;
}

/** Step 1: find the challenge `id` and check it belongs to this join (method, request id, key). */
export async function openChallenge(
  store: ChallengeLookup,
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
export async function consumeChallenge(
  store: {
    consume(
      id: string,
      now: number,
    ): Promise<{ ok: true } | { ok: false; reason: 'challenge_invalid' | 'challenge_expired' | 'challenge_reused' }>;
  },
  id: string,
  now: number,
): Promise<void> {
  const r = await store.consume(id, now);
  if (!r.ok)
    throw new SigilError(
      r.reason,
      r.reason === 'challenge_reused' ? 'the challenge was already answered (a concurrent join won)' : undefined,
    );
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
