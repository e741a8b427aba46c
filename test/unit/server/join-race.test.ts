/**
 * Two copies of one join racing (server/ops/join.ts), as an agent that resent its join after a
 * lost answer, or a broker that delivered it twice, produces: both copies pass the early
 * idempotency check before either commits, so only the re-check INSIDE the write transaction can
 * answer the second copy with the first one's answer. Without it the second copy would try to
 * spend the token again and get token_reused — an agent whose first answer was lost would be
 * refused the identity it was just given. The early checks are held until both copies made
 * theirs, to open that window for sure (as test/unit/server/renew-race.test.ts does for renew).
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { handleJoin } from '../../../src/server/ops/join.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import type { IdempotencyStore, Stores } from '../../../src/server/store/types.js';
import { joinPayload, sign, startIssuer, type Harness } from '../../integration/harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(async () => {
  await h?.close();
});

/** The context whose reads of stored answers outside a transaction wait until `copies` of them were made. */
function withRacingEarlyChecks(ctx: IssuerContext, copies: number): IssuerContext {
  const real = ctx.stores.idempotency;
  const waiting: Array<() => void> = [];
  const idempotency = Object.assign(Object.create(real) as IdempotencyStore, {
    get: async (requestId: string) => {
      const seen = await real.get(requestId);
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === copies) for (const go of waiting) go();
      });
      return seen;
    },
  });
  return { ...ctx, stores: Object.assign(Object.create(ctx.stores) as Stores, { idempotency }) };
}

const resultOf = (jws: { payload: string }) =>
  (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { result: { instance_id: string; serial: string } })
    .result;

it('the same token join twice at once: both get the one identity, one instance, the token spent once', async () => {
  const token = await h.token();
  const { payload, signer } = await joinPayload({}, { token });
  const envelope = await sign(signer, payload);
  const before = await h.counts();
  const ctx = withRacingEarlyChecks(h.ctx, 2);
  const [a, b] = await Promise.all([handleJoin(ctx, envelope, null), handleJoin(ctx, envelope, null)]);
  expect(resultOf(b)).toEqual(resultOf(a));
  const after = await h.counts();
  expect(after.instances - before.instances).toBe(1);
  expect(after.certificates - before.certificates).toBe(1);
  expect(after.usedTokens - before.usedTokens).toBe(1);
});
