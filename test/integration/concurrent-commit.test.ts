/**
 * Races the issuer settles INSIDE its write transaction, made real: both requests are held at the
 * transaction's door (test/helpers/held-at-commit.ts) until both have passed every earlier check,
 * so the early checks cannot decide for them.
 *
 *   token: two different joins with one token both see "not used yet" in attest; only the
 *          conditional consume at commit (join/token/server.ts commit → tx.consumeToken) keeps the
 *          second from minting a second instance: token_reused.
 *   renew: two different renewals of one generation (the agent restarted mid-renewal, or a thief
 *          racing the owner) both authenticate with the generation-1 certificate; the decision
 *          under the write lock lets exactly one successor exist.
 *
 * The decision this file asserts (docs/testing.md "Concurrent renewals"): a renewal OVERTAKEN by a
 * concurrent one (it arrived before the successor was issued) is refused with generation_mismatch
 * and does NOT lock the instance — the owner keeps renewing with the successor. A renewal that
 * arrives after the successor was issued, signed by the old generation, is a stolen or cloned
 * identity and locks it (test/integration/idempotency.test.ts "a stale generation").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import type { Jws } from '../../src/protocol/jws.js';
import type { IssuerContext } from '../../src/server/issuer.js';
import { handleJoin } from '../../src/server/ops/join.js';
import { handleRenew } from '../../src/server/ops/renew.js';
import { holdAtCommit } from '../helpers/held-at-commit.js';
import { answerResult } from '../helpers/racing-early-checks.js';
import { joinPayload, sign, startIssuer, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startIssuer();
});
afterAll(async () => {
  await h?.close();
});

const codeOf = (o: PromiseSettledResult<unknown>): string | undefined =>
  o.status === 'rejected' ? (o.reason as SigilError).code : undefined;

describe('attack: one join token, two joins at once', () => {
  it('both pass the early "not used" check; the consume at commit lets one in: token_reused for the other', async () => {
    const token = await h.token();
    const [x, y] = await Promise.all([joinPayload({}, { token }), joinPayload({}, { token })]);
    const [ex, ey] = await Promise.all([sign(x.signer, x.payload), sign(y.signer, y.payload)]);
    const before = await h.counts();
    const held = holdAtCommit(h.ctx, 2);
    const outcomes = await Promise.allSettled([handleJoin(held.ctx, ex, null), handleJoin(held.ctx, ey, null)]);
    expect(held.arrived()).toBe(2); // both reached their transaction: the race happened
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.map(codeOf).filter(Boolean)).toEqual(['token_reused']);
    const after = await h.counts();
    expect(after.instances - before.instances).toBe(1);
    expect(after.usedTokens - before.usedTokens).toBe(1);
  });
});

describe('concurrent renewals of one generation', () => {
  /** A context whose clock says the request arrived at `arrival` and any later reading is `later`. */
  function clocked(ctx: IssuerContext, arrival: number, later = arrival): IssuerContext {
    let first = true;
    return {
      ...ctx,
      now: () => {
        const t = first ? arrival : later;
        first = false;
        return t;
      },
    };
  }

  it('exactly one successor; the overtaken renewal is generation_mismatch and the instance is NOT locked', async () => {
    const id = await h.join();
    const [a, b] = await Promise.all([h.renewEnvelope(id), h.renewEnvelope(id)]);
    const held = holdAtCommit(h.ctx, 2);
    const t0 = Date.now();
    // a arrives first and issues 10 ms later; b arrived in between, before a's successor existed.
    const outcomes = await Promise.allSettled([
      handleRenew(clocked(held.ctx, t0, t0 + 10), a.envelope, null),
      handleRenew(clocked(held.ctx, t0 + 5), b.envelope, null),
    ]);
    expect(held.arrived()).toBe(2);
    const won = outcomes.filter((o): o is PromiseFulfilledResult<Jws> => o.status === 'fulfilled');
    expect(won).toHaveLength(1);
    expect(outcomes.map(codeOf).filter(Boolean)).toEqual(['generation_mismatch']);
    const instance = await h.ctx.stores.instances.get(id.result.instance_id);
    expect(instance).toMatchObject({ generation: 2, locked: false });
    expect(
      (await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.generation).sort(),
    ).toEqual([1, 2]);

    // The owner of the successor keeps renewing: nothing was locked by the race.
    const winner = won[0]!.value;
    const next = outcomes[0]!.status === 'fulfilled' ? a : b;
    const successor = {
      signer: next.newSigner,
      chainPem: answerResult<{ chain: string[] }>(winner).chain,
      result: answerResult<typeof id.result>(winner),
    };
    const again = await h.post('renew', (await h.renewEnvelope(successor)).envelope);
    expect(again.status, again.text).toBe(200);
  });
});
