/**
 * The async store contract (../types.ts) on SQLite, adapting the synchronous stores:
 *
 * - Writes: one writer connection. `withWriteTx` takes the in-process FIFO write queue, then
 *   BEGIN IMMEDIATE (the WAL write lock, so other processes wait on busy_timeout), awaits `fn`,
 *   and COMMITs, or ROLLBACKs when `fn` throws. A top-level write method is the same, around just that call. The stores' own inner transactions
 *   (resources.put, audit.append, …) run as savepoints inside it.
 * - Reads outside a transaction: a SEPARATE read-only connection. With one connection, the
 *   writes of a transaction that is open while its `fn` awaits (say, a signature) would be
 *   visible to every other read on that connection: a concurrent request could act on a
 *   certificate or a consumed token that is about to be rolled back. The read connection sees
 *   only committed data (each statement reads the newest WAL snapshot) and never waits for the
 *   queue. An in-memory database has no second connection: its reads queue behind the writes.
 * - Errors: as the synchronous stores (SQLITE_BUSY after busy_timeout when another process
 *   holds the write lock past it; constraint errors as SqliteError).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type {
  AdminCredentialStore,
  AuditStore,
  BotLockStore,
  CertificateStore,
  ChallengeStore,
  DeviceStore,
  IdempotencyStore,
  InstanceStore,
  KeyBindingStore,
  ResourceStore,
  Stores,
  TokenReplayStore,
  TokenStore,
  TxStores,
} from '../types.js';
import {
  callSync,
  invokeSync,
  storeSetMaker,
  type Access,
  type AsyncifiedSet,
  type StoreName,
  type SyncStoreSet,
} from './async-access.js';
import type { SqliteAuditOptions } from './audit.js';
import { openSqlite, openSqliteReader } from './db.js';
import { syncSqliteStores } from './sync.js';
import { WriteQueue } from './write-queue.js';

export interface AsyncSqliteOptions {
  audit?: SqliteAuditOptions;
}

/** Open (creating and migrating if needed) the database at `path` behind the async contract. */
export function openAsyncSqliteStores(path: string, opts: AsyncSqliteOptions = {}): Stores {
  return asyncSqliteStoresOn(openSqlite(path), path, opts);
}

/**
 * The async stores over `writer`, a connection to `path` already opened and migrated (./db.ts
 * openSqlite) that nothing else uses from now on (data-dir.ts sets the audit key up on it
 * first). Opens the read connection; closes `writer` when that fails.
 */
export function asyncSqliteStoresOn(
  writer: BetterSqlite3.Database,
  path: string,
  opts: AsyncSqliteOptions = {},
): Stores {
  const inMemory = path === ':memory:' || path === '';
  let reader: BetterSqlite3.Database | undefined;
  try {
    reader = inMemory ? undefined : openSqliteReader(path);
  } catch (err) {
    writer.close();
    throw err;
  }
  return new AsyncSqliteStores(writer, reader, opts);
}

/** Where a transaction stands; its stores refuse calls once it is no longer open. */
interface TxScope {
  open: boolean;
}

export class AsyncSqliteStores implements Stores {
  readonly resources: ResourceStore;
  readonly tokens: TokenStore;
  readonly challenges: ChallengeStore;
  readonly devices: DeviceStore;
  readonly keyBindings: KeyBindingStore;
  readonly tokenReplay: TokenReplayStore;
  readonly instances: InstanceStore;
  readonly botLocks: BotLockStore;
  readonly certificates: CertificateStore;
  readonly idempotency: IdempotencyStore;
  readonly audit: AuditStore;
  readonly admin: AdminCredentialStore;

  private readonly queue = new WriteQueue();
  private readonly write: SyncStoreSet;
  private readonly read: SyncStoreSet | undefined;
  private readonly begin: BetterSqlite3.Statement;
  private readonly commit: BetterSqlite3.Statement;
  private readonly rollback: BetterSqlite3.Statement;
  /** One top-level write as its own transaction (savepoint-free: nothing else is open then). */
  private readonly single: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;
  /** Makes the stores handed to one transaction's fn, bound to its scope. */
  private readonly txStores: (scope: TxScope) => AsyncifiedSet;
  /** Set by the first `close()`: from then on calls are refused. */
  private closed: Promise<void> | undefined;

  /**
   * `writer`: opened and migrated (./db.ts openSqlite). `reader`: a read-only connection to the
   * same file (openSqliteReader), or undefined to serve reads through the write queue.
   * `close()` closes both.
   */
  constructor(
    private readonly writer: BetterSqlite3.Database,
    private readonly reader: BetterSqlite3.Database | undefined,
    opts: AsyncSqliteOptions = {},
  ) {
    this.write = syncSqliteStores(writer, opts);
    this.read = reader && syncSqliteStores(reader, opts);
    this.begin = writer.prepare('BEGIN IMMEDIATE');
    this.commit = writer.prepare('COMMIT');
    this.rollback = writer.prepare('ROLLBACK');
    this.single = writer.transaction((fn: () => unknown) => fn());
    // Inside a transaction every call, read or write, runs on the writer connection.
    this.txStores = storeSetMaker<TxScope>((scope, store, method, _access, args) => {
      if (!scope.open)
        return Promise.reject(
          new TypeError(
            `${store}.${method}: the transaction it belongs to has already ended (use the stores withWriteTx passes only inside its fn)`,
          ),
        );
      return callSync(this.write, store, method, args);
    });
    const top = storeSetMaker<undefined>((_, store, method, access, args) =>
      this.dispatch(store, method, access, args),
    )(undefined);
    this.resources = top.resources;
    this.tokens = top.tokens;
    this.challenges = top.challenges;
    this.devices = top.devices;
    this.keyBindings = top.keyBindings;
    this.tokenReplay = top.tokenReplay;
    this.instances = top.instances;
    this.botLocks = top.botLocks;
    this.certificates = top.certificates;
    this.idempotency = top.idempotency;
    this.audit = top.audit;
    this.admin = top.admin;
  }

  async withWriteTx<T>(fn: (tx: TxStores) => Promise<T>): Promise<T> {
    if (this.closed) throw closedError();
    if (!this.queue.tryAcquire()) await this.queue.acquire();
    try {
      this.begin.run();
      const scope: TxScope = { open: true };
      try {
        const value = await fn(this.txStores(scope));
        scope.open = false;
        // Deferred foreign keys are checked here: a failing COMMIT leaves the transaction open.
        this.commit.run();
        return value;
      } catch (err) {
        scope.open = false;
        if (this.writer.inTransaction) this.rollback.run();
        throw err;
      }
    } finally {
      this.queue.release();
    }
  }

  close(): Promise<void> {
    // Calls from now on are refused; those already queued run first (FIFO), so nothing is open
    // on the writer when it closes.
    this.closed ??= this.queue.run(() => {
      this.writer.close();
      this.reader?.close();
    });
    return this.closed;
  }

  /** A top-level call: reads on the read connection, writes as a transaction of their own. */
  private dispatch(store: StoreName, method: string, access: Access, args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(closedError());
    if (access === 'read' && this.read) return callSync(this.read, store, method, args);
    return this.queue.run(() =>
      access === 'read'
        ? callSync(this.write, store, method, args)
        : this.single.immediate(() => invokeSync(this.write, store, method, args)),
    );
  }
}

function closedError(): TypeError {
  return new TypeError('the store is closed');
}
