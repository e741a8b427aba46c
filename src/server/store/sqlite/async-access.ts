/**
 * Which method of each synchronous store reads and which writes, and the builder that turns the
 * synchronous stores into the async contract's shape (../types.ts). The async SQLite stores
 * route by this table: reads outside a transaction go to the read connection, writes through
 * the write queue. The table is checked by the compiler against the store interfaces in both
 * directions: a method missing here, or named here but absent there, does not compile, so a
 * method added later cannot silently bypass the queue.
 */
import type { SyncStores } from './sync-types.js';

export type Access = 'read' | 'write';

/** The synchronous per-aggregate stores (everything in `SyncStores` but `tx` and `close`). */
export type SyncStoreSet = Omit<SyncStores, 'tx' | 'close'>;
export type StoreName = keyof SyncStoreSet;

type MethodName<S> = { [K in keyof S]-?: S[K] extends (...args: never[]) => unknown ? K : never }[keyof S] & string;

/** A synchronous store's methods, each returning a Promise of what it returned. */
export type Asyncify<S> = {
  [K in keyof S]: S[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : never;
};
export type AsyncifiedSet = { readonly [N in StoreName]: Asyncify<SyncStoreSet[N]> };

export const STORE_METHOD_ACCESS = {
  resources: { put: 'write', get: 'read', list: 'read', delete: 'write' },
  tokens: { create: 'write', get: 'read', consume: 'write', list: 'read', prune: 'write' },
  challenges: { create: 'write', get: 'read', consume: 'write', prune: 'write' },
  devices: { getByFingerprint: 'read', put: 'write', list: 'read' },
  keyBindings: { get: 'read', bind: 'write', reset: 'write', list: 'read' },
  tokenReplay: { seen: 'read', record: 'write', prune: 'write' },
  instances: {
    create: 'write',
    get: 'read',
    list: 'read',
    recordIssue: 'write',
    setLocked: 'write',
    updateFacts: 'write',
  },
  botLocks: { setLocked: 'write', isLocked: 'read', listLocked: 'read' },
  certificates: { insert: 'write', get: 'read', listByInstance: 'read', expiringBefore: 'read' },
  idempotency: { get: 'read', put: 'write', prune: 'write' },
  audit: {
    append: 'write',
    list: 'read',
    verify: 'read',
    startWalk: 'read',
    verifyStep: 'read',
    head: 'read',
    anchor: 'read',
    keyInfo: 'read',
    triggers: 'read',
    pruneThrough: 'write',
    lastSeqBefore: 'read',
  },
  admin: {
    setAdminTokenHash: 'write',
    getAdminTokenHash: 'read',
    rememberWithdrawnKey: 'write',
    withdrawnKeys: 'read',
  },
} as const satisfies { readonly [N in StoreName]: Readonly<Record<MethodName<SyncStoreSet[N]>, Access>> };

/** How one call is carried out: in which context (say, which transaction), on which store and method, read or write, with what arguments. */
export type Dispatch<C> = (
  ctx: C,
  store: StoreName,
  method: string,
  access: Access,
  args: unknown[],
) => Promise<unknown>;

/**
 * Makes async store sets whose every method hands its call, with the set's context, to
 * `dispatch`. The methods live on one prototype per store, built once here, so a set made per
 * transaction costs thirteen small objects instead of a closure per method (bench/store-tx.ts).
 * Like the synchronous stores (classes), the methods need their object: call them as
 * `tx.tokens.consume(…)`, not detached.
 */
export function storeSetMaker<C>(dispatch: Dispatch<C>): (ctx: C) => AsyncifiedSet {
  const prototypes: Array<[StoreName, object]> = [];
  for (const [store, methods] of Object.entries(STORE_METHOD_ACCESS) as Array<[StoreName, Record<string, Access>]>) {
    const proto: Record<string, (this: { ctx: C }, ...args: unknown[]) => Promise<unknown>> = {};
    for (const [method, access] of Object.entries(methods)) {
      proto[method] = function (this: { ctx: C }, ...args: unknown[]) {
        return dispatch(this.ctx, store, method, access, args);
      };
    }
    prototypes.push([store, proto]);
  }
  return (ctx) => {
    const set: Record<string, { ctx: C }> = {};
    for (const [store, proto] of prototypes) {
      const view = Object.create(proto) as { ctx: C };
      view.ctx = ctx;
      set[store] = view;
    }
    // Built from the table above, which the compiler matched against every store interface.
    return set as unknown as AsyncifiedSet;
  };
}

/** Call `store.method(...args)` on a synchronous store set (throws what it throws). */
export function invokeSync(stores: SyncStoreSet, store: StoreName, method: string, args: unknown[]): unknown {
  const target = stores[store] as unknown as Record<string, (...a: unknown[]) => unknown>;
  return target[method]!.apply(target, args);
}

/** `invokeSync`, with a throw turned into a rejection (contract methods never throw synchronously). */
export function callSync(stores: SyncStoreSet, store: StoreName, method: string, args: unknown[]): Promise<unknown> {
  try {
    return Promise.resolve(invokeSync(stores, store, method, args));
  } catch (err) {
    return Promise.reject(err);
  }
}

/**
 * One synchronous store behind its async shape, with no queue: for a tool that reads the file on
 * its own connection, alone (doctor's audit check), where nothing else writes through it.
 */
export function asyncView<N extends StoreName>(name: N, store: SyncStoreSet[N]): Asyncify<SyncStoreSet[N]> {
  const target = store as unknown as Record<string, (...a: unknown[]) => unknown>;
  const view: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  for (const method of Object.keys(STORE_METHOD_ACCESS[name])) {
    view[method] = (...args) => {
      try {
        return Promise.resolve(target[method]!.apply(target, args));
      } catch (err) {
        return Promise.reject(err);
      }
    };
  }
  // Built from the access table, which the compiler matched against the store's interface.
  return view as unknown as Asyncify<SyncStoreSet[N]>;
}
