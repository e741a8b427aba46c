/**
 * For the race tests of the issuing operations (test/unit/server/*-race.test.ts): an issuer
 * context whose reads of stored answers OUTSIDE a transaction are held until `copies` of them
 * were made, so every copy of a request has read "not answered yet" before any goes on. That
 * opens, for sure, the window only the idempotency re-check inside the write transaction closes.
 */
import type { IssuerContext } from '../../src/server/issuer.js';
import type { IdempotencyStore, Stores } from '../../src/server/store/types.js';

export function withRacingEarlyChecks(ctx: IssuerContext, copies: number): IssuerContext {
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

/** The `result` of a signed answer's payload. */
export function answerResult<T>(jws: { payload: string }): T {
  return (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as { result: T }).result;
}
