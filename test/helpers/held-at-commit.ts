/**
 * For the commit-race tests (test/integration/concurrent-commit.test.ts): an issuer context whose
 * first `copies` write transactions are held at their door until all `copies` requests have
 * reached it. Every request has then passed every check made before its transaction (token
 * possession and "not used yet", JWS and chain, CSR) before any of them commits, so only the
 * guards INSIDE the transaction (the token's conditional consume, the generation decision) can
 * tell the requests apart. Later transactions (refusal audit rows) pass straight through.
 */
import type { IssuerContext } from '../../src/server/issuer.js';
import type { Stores } from '../../src/server/store/types.js';

export interface HeldContext {
  ctx: IssuerContext;
  /** How many transactions reached the door (for asserting that the race really happened). */
  arrived(): number;
}

export function holdAtCommit(ctx: IssuerContext, copies: number): HeldContext {
  const real = ctx.stores;
  const waiting: Array<() => void> = [];
  let arrived = 0;
  const stores = Object.assign(Object.create(real) as Stores, {
    withWriteTx: async <T>(fn: Parameters<Stores['withWriteTx']>[0]): Promise<T> => {
      if (arrived < copies) {
        arrived++;
        await new Promise<void>((resolve) => {
          waiting.push(resolve);
          if (waiting.length === copies) for (const go of waiting) go();
        });
      }
      return real.withWriteTx(fn) as Promise<T>;
    },
  });
  return { ctx: { ...ctx, stores }, arrived: () => arrived };
}
