/**
 * The challenge round, method side. A method that wants proof of freshness returns
 * `{ challenge }` (types.ts ChallengeRequired) from `attest`; the host stores the challenge
 * (server/ops/challenge.ts) and the agent answers with a second join request — same request
 * id, same new key — whose evidence names the challenge id. The method then:
 *
 *   1. `openChallenge` in `attest`: the challenge exists, is unused and unexpired, was issued by
 *      this method to this request id for this key (early, precise refusals);
 *   2. verifies its answer against `rec.nonce` / `rec.state`;
 *   3. `consumeChallenge` in `Attested.commit`, inside the issuing transaction: one
 *      conditional UPDATE, so a replayed or concurrent answer is refused (`challenge_reused`)
 *      and a join refused later (locked bot, bad CSR) burns nothing.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../errors.js';
import type { ChallengeRecord, Stores } from '../server/store/types.js';
import type { AttestInput } from './types.js';

/** Upper bound on a challenge's life: long enough for a slow TPM or HSM, short enough to be fresh. */
export const MAX_CHALLENGE_TTL_MS = 60_000;

export const CHALLENGE_ID_RE = /^[A-Za-z0-9_-]{22}$/;

/** sha256:<hex> of the new key's SPKI, as challenges record it. */
export function challengeKeyHash(spkiDer: Buffer): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}

export function openChallenge(stores: Stores, input: AttestInput, method: string, id: string): ChallengeRecord {
  const rec = CHALLENGE_ID_RE.test(id) ? stores.challenges.get(id) : undefined;
  if (!rec) throw new SigilError('challenge_invalid', 'the challenge id is not known to this issuer (it may have expired long ago); start the join again');
  if (rec.usedAt !== null) throw new SigilError('challenge_reused', `the challenge was already answered at ${new Date(rec.usedAt).toISOString()}; a challenge answers one join only`);
  if (rec.expiresAt <= input.now) throw new SigilError('challenge_expired', `the challenge expired at ${new Date(rec.expiresAt).toISOString()}; start the join again`);
  if (rec.method !== method) throw new SigilError('challenge_invalid', `the challenge was issued by the ${rec.method} join method, not ${method}`);
  if (rec.requestId !== input.requestId) throw new SigilError('challenge_invalid', 'the challenge was issued to another join request (answer with the same request id)');
  if (rec.spkiHash !== challengeKeyHash(input.spkiDer)) throw new SigilError('challenge_invalid', 'the challenge was issued for another identity key (answer with the same CSR key)');
  return rec;
}

/** Use the challenge up; call from `Attested.commit`. */
export function consumeChallenge(stores: Stores, id: string, now: number): void {
  const r = stores.challenges.consume(id, now);
  if (!r.ok) throw new SigilError(r.reason, r.reason === 'challenge_reused' ? 'the challenge was already answered (a concurrent join won)' : undefined);
}
