/**
 * Two copies of one renewal racing (server/ops/renew.ts): both pass the early idempotency check
 * before either commits, so only the re-check INSIDE the write transaction can answer the second
 * copy with the first one's answer. Without it the second copy fails the generation check and
 * the agent, whose first answer was lost, would get a refusal instead of its certificate.
 * The early checks are held here until both copies made theirs, to open that window for sure.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { handleRenew } from '../../../src/server/ops/renew.js';
import type { IssuerContext } from '../../../src/server/issuer.js';
import type { IdempotencyStore, Stores } from '../../../src/server/store/types.js';
import { startIssuer, type Harness } from '../../integration/harness.js';

let h: Harness;
beforeEach(async () => {
  h = await startIssuer();
});
afterEach(async () => {
  await h?.close();
});

/**
 * The issuer's context whose reads of stored answers OUTSIDE a transaction are held until
 * `copies` of them were made: every copy has read "not answered yet" before any goes on.
 */
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

it('the same renewal twice at once: both get the one certificate, the generation advances once', async () => {
  const id = await h.join();
  const { envelope } = await h.renewEnvelope(id);
  const ctx = withRacingEarlyChecks(h.ctx, 2);
  const [a, b] = await Promise.all([handleRenew(ctx, envelope, null), handleRenew(ctx, envelope, null)]);
  const result = (jws: { payload: string }) =>
    (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { result: { serial: string; generation: number } })
      .result;
  expect(result(b)).toEqual(result(a));
  expect(result(a).generation).toBe(2);
  expect((await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.generation)).toEqual([
    1, 2,
  ]);
  expect(await h.ctx.stores.instances.get(id.result.instance_id)).toMatchObject({ generation: 2, locked: false });
});

it('two different renewals of one generation at once: exactly one succeeds, the other is generation_mismatch', async () => {
  const id = await h.join();
  const [x, y] = await Promise.all([h.renewEnvelope(id), h.renewEnvelope(id)]);
  const ctx = withRacingEarlyChecks(h.ctx, 2);
  const outcomes = await Promise.allSettled([handleRenew(ctx, x.envelope, null), handleRenew(ctx, y.envelope, null)]);
  expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
  expect(outcomes.find((o) => o.status === 'rejected')).toMatchObject({ reason: { code: 'generation_mismatch' } });
  expect((await h.ctx.stores.certificates.listByInstance(id.result.instance_id)).map((c) => c.generation)).toEqual([
    1, 2,
  ]);
});
