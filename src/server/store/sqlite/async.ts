/**
 * The async store contract (../types.ts) on SQLite, adapting the synchronous stores:
 *
 * - Writes: one writer connection. `withWriteTx` takes the in-process FIFO write queue, then
 *   BEGIN IMMEDIATE (the WAL write lock, so other processes wait on busy_timeout), awaits `fn`,
 *   and COMMITs, or ROLLBACKs when `fn` throws. A top-level write method is the same, around just that call. The stores' own inner transactions
 *   (resources.put, audit.append, …) run as savepoints inside it.
 * - Group commit (issue #14): the `withWriteTx` calls waiting for the queue share one
 *   BEGIN … COMMIT, each inside a SAVEPOINT of its own, run one after the other (so each still
 *   sees the ones before it: serial, as before). A member whose `fn` throws is rolled back to its
 *   savepoint, alone. Every member is settled only after the shared COMMIT, so no answer is sent
 *   before it is durable, and no refusal rests on writes that were never committed. When the
 *   COMMIT itself fails (a deferred foreign key), the group is rolled back and each member runs
 *   again alone (`fn` may run more than once, as on PostgreSQL), so only the guilty one fails;
 *   when an error ends the whole transaction (SQLite rolls back on some I/O errors), the members
 *   before it run again. Commits cost most of a renewal's store time (the WAL frames of the pages
 *   the transaction touched); a group writes each page once.
 * - Checkpoints: SQLite's (wal_autocheckpoint, on the COMMIT that crosses 1000 WAL pages) until
 *   the store is busy ({@link CHECKPOINTER_AFTER_TX} committed transactions), then a worker thread's
 *   (./checkpointer.ts), so that copying pages and fsyncing stop holding the event loop inside a
 *   COMMIT (issue #14: those COMMITs were the slowest 1–2%, 11–60 ms). Short-lived users (`sigil
 *   ctl`, most tests) never start one.
 * - Reads outside a transaction: a SEPARATE read-only connection. With one connection, the
 *   writes of a transaction that is open while its `fn` awaits (say, a signature) would be
 *   visible to every other read on that connection: a concurrent request could act on a
 *   certificate or a consumed token that is about to be rolled back. The read connection sees
 *   only committed data (each statement reads the newest WAL snapshot) and never waits for the
 *   queue. An in-memory database has no second connection: its reads queue behind the writes.
 * - Errors: as the synchronous stores (SQLITE_BUSY after busy_timeout when another process
 *   holds the write lock past it; constraint errors as SqliteError).
 */
import { channel } from 'node:diagnostics_channel';
import { setImmediate as nextTurn } from 'node:timers/promises';
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
import type { FleetStore } from '../fleet-types.js';
import { SqliteFleetStore } from './fleet.js';
import { SqliteIssuerRegistry } from './issuers.js';
import { SqliteUiSessionStore } from './ui-sessions.js';
import type { UiSessionStore } from '../ui-session-types.js';
import type { IssuerRegistryStore } from '../issuer-registry-types.js';
import { openSqlite, openSqliteReader, sqliteDurability, type SqliteDurability } from './db.js';
import { WalSync } from './wal-sync.js';
import type { SigilError } from '../../../errors.js';
import { syncSqliteStores } from './sync.js';
import { WriteQueue } from './write-queue.js';
import { BackgroundCheckpointer, SAFETY_NET_PAGES } from './checkpointer.js';

/** SQLite's default wal_autocheckpoint (pages). */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;

export interface AsyncSqliteOptions {
  audit?: SqliteAuditOptions;
  /**
   * The database file, for WAL checkpoints off the event loop once the store is busy
   * (./checkpointer.ts; set by asyncSqliteStoresOn for a file-backed store).
   */
  checkpointPath?: string;
  /**
   * How commits reach the disk (./db.ts sqliteDurability; default from SIGIL_SQLITE_SYNCHRONOUS).
   * `flush` on a file-backed store: the writer runs NORMAL and each transaction is settled only
   * once the WAL is flushed after its COMMIT (./wal-sync.ts).
   */
  durability?: SqliteDurability;
  /** Tests: how the WAL's fd is flushed (default fdatasync(2)). */
  flushWal?: (fd: number) => Promise<void>;
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
  const durability = opts.durability ?? sqliteDurability();
  return new AsyncSqliteStores(writer, reader, inMemory ? opts : { checkpointPath: path, ...opts, durability });
}

/** Where a transaction stands; its stores refuse calls once it is no longer open. */
interface TxScope {
  open: boolean;
}

/** One `withWriteTx` call waiting for, or running in, a group commit. */
interface Member {
  fn: (tx: TxStores) => Promise<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  outcome?: { ok: true; value: unknown } | { ok: false; error: unknown };
}

/** At most this many transactions share one COMMIT (bounds the wait of the queue's other users). */
const MAX_GROUP = 64;
/**
 * A group stops taking members once it has held the event loop this long, and commits: every
 * member is answered only after the COMMIT, so a group that takes a whole backlog (the requests
 * queued behind a GC pause) makes its first member wait for its last — a convoy (issue #14: groups
 * holding the loop 10–30 ms were the p99 at 0.8 of saturation). A few milliseconds of members
 * still share each COMMIT's pages.
 */
export const GROUP_HOLD_BUDGET_MS = 4;
/** Committed transactions after which a file-backed store moves its checkpoints to a worker (see the header). */
export const CHECKPOINTER_AFTER_TX = 512;

/**
 * Each committed group, for whoever subscribes (bench/lib/issuer-probe.mjs: where a latency tail
 * comes from): `{ size, holdMs, commitMs }` — members, time from BEGIN to the end of COMMIT, and
 * the COMMIT alone (a WAL checkpoint runs inside the COMMIT that crosses wal_autocheckpoint).
 * Published only while the channel has subscribers; otherwise not even the clock is read.
 */
const groupChannel = channel('sigil:sqlite:group');

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
  /** The fleet view's reads (issue #18): on the read connection, never in a transaction. */
  readonly fleet: FleetStore;
  /** The issuer registry and cRLNumber counters (issue #15; ./issuers.ts), outside transactions. */
  readonly issuers: IssuerRegistryStore;
  /** Fleet-view sessions (./ui-sessions.ts), outside transactions. */
  readonly uiSessions: UiSessionStore;

  private readonly queue = new WriteQueue();
  private readonly write: SyncStoreSet;
  private readonly read: SyncStoreSet | undefined;
  private readonly begin: BetterSqlite3.Statement;
  private readonly commit: BetterSqlite3.Statement;
  private readonly rollback: BetterSqlite3.Statement;
  private readonly savepoint: BetterSqlite3.Statement;
  private readonly releaseSavepoint: BetterSqlite3.Statement;
  private readonly rollbackToSavepoint: BetterSqlite3.Statement;
  /** `withWriteTx` calls not yet taken into a group, in arrival order. */
  private readonly pendingTx: Member[] = [];
  /** True while a drain loop owns the pending list. */
  private draining = false;
  /** Members to run one per transaction, after their group's COMMIT failed. */
  private solo = 0;
  /** Groups begun, and whether the last wait for stragglers brought any (runGroup). */
  private groups = 0;
  private stragglersCame = true;
  /** One top-level write as its own transaction (savepoint-free: nothing else is open then). */
  private readonly single: BetterSqlite3.Transaction<(fn: () => unknown) => unknown>;
  /** Makes the stores handed to one transaction's fn, bound to its scope. */
  private readonly txStores: (scope: TxScope) => AsyncifiedSet;
  /** Set by the first `close()`: from then on calls are refused. */
  private closed: Promise<void> | undefined;
  /** Transactions committed so far (counted until the checkpoint worker starts). */
  private committedTx = 0;
  /** The worker that checkpoints once the store is busy (./checkpointer.ts). */
  checkpointer: BackgroundCheckpointer | undefined;
  /** Flushes the WAL after commits, off the event loop (`flush` durability on a file; ./wal-sync.ts). */
  private readonly walSync: WalSync | undefined;

  /**
   * `writer`: opened and migrated (./db.ts openSqlite). `reader`: a read-only connection to the
   * same file (openSqliteReader), or undefined to serve reads through the write queue.
   * `close()` closes both.
   */
  constructor(
    private readonly writer: BetterSqlite3.Database,
    private readonly reader: BetterSqlite3.Database | undefined,
    private readonly opts: AsyncSqliteOptions = {},
  ) {
    // Only in WAL mode (a file system without shared memory may refuse it and keep a rollback
    // journal: there FULL syncs at COMMIT, and there is no WAL file to flush).
    const wal = opts.checkpointPath !== undefined && writer.pragma('journal_mode', { simple: true }) === 'wal';
    if (opts.checkpointPath && opts.durability && !wal)
      writer.pragma(`synchronous = ${opts.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    else if (opts.checkpointPath && opts.durability) {
      // `flush`: SQLite writes the WAL without fsync in COMMIT; this store flushes it instead and
      // answers only after (see ./wal-sync.ts for why that is the same guarantee as FULL).
      writer.pragma(`synchronous = ${opts.durability === 'full' ? 'FULL' : 'NORMAL'}`);
      if (opts.durability === 'flush') this.walSync = new WalSync(`${opts.checkpointPath}-wal`, opts.flushWal);
    }
    this.write = syncSqliteStores(writer, opts);
    this.read = reader && syncSqliteStores(reader, opts);
    this.begin = writer.prepare('BEGIN IMMEDIATE');
    this.commit = writer.prepare('COMMIT');
    this.rollback = writer.prepare('ROLLBACK');
    this.savepoint = writer.prepare('SAVEPOINT sigil_group_member');
    this.releaseSavepoint = writer.prepare('RELEASE sigil_group_member');
    this.rollbackToSavepoint = writer.prepare('ROLLBACK TO sigil_group_member');
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
    this.fleet = new SqliteFleetStore(reader ?? writer, (read) => this.readOutside(read));
    const writeOutside = <T>(write: () => T): Promise<T> =>
      this.closed
        ? Promise.reject(closedError())
        : this.queue.run(() => this.committedAlone(this.single.immediate(write) as T)).then((v) => this.afterCommit(v));
    this.issuers = new SqliteIssuerRegistry(writer, reader ?? writer, (read) => this.readOutside(read), writeOutside);
    this.uiSessions = new SqliteUiSessionStore(
      writer,
      reader ?? writer,
      (read) => this.readOutside(read),
      writeOutside,
    );
  }

  withWriteTx<T>(fn: (tx: TxStores) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    const settled = new Promise<T>((resolve, reject) =>
      this.pendingTx.push({ fn, resolve: resolve as (v: unknown) => void, reject }),
    );
    if (!this.draining) void this.drain();
    return settled;
  }

  close(): Promise<void> {
    // Calls from now on are refused; those already queued run first (FIFO; the pending
    // transactions too), so nothing is open on the writer when it closes.
    this.closed ??= this.queue.run(async () => {
      while (this.pendingTx.length > 0) await this.runGroup();
      await this.walSync?.close();
      await this.checkpointer?.stop();
      this.writer.close();
      this.reader?.close();
    });
    return this.closed;
  }

  /** Take the queue for one group after another while transactions are pending. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.pendingTx.length > 0) {
        if (!this.queue.tryAcquire()) await this.queue.acquire();
        try {
          await this.runGroup();
        } finally {
          this.queue.release();
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * One group commit (see the module comment), holding the queue. Waits one turn of the event
   * loop for stragglers before it commits, so requests that arrived together share the COMMIT.
   */
  private async runGroup(): Promise<void> {
    if (this.pendingTx.length === 0) return;
    const max = this.solo > 0 ? 1 : MAX_GROUP;
    if (this.solo > 0) this.solo--;
    const probed = groupChannel.hasSubscribers;
    const began = probed ? performance.now() : 0;
    try {
      this.begin.run();
    } catch (err) {
      // No transaction (SQLITE_BUSY past busy_timeout): this group's members fail as a lone
      // transaction would have.
      for (const m of this.pendingTx.splice(0, max)) m.reject(err);
      return;
    }
    const group: Member[] = [];
    // Wait for stragglers only while waiting pays: after a wait that brought none, the next
    // groups commit at once (a lone writer pays no extra turn), and every 16th group tries again.
    let waited = max === 1 || (!this.stragglersCame && this.groups % 16 !== 0);
    this.groups++;
    const held = performance.now() + GROUP_HOLD_BUDGET_MS;
    while (group.length < max && (group.length === 0 || performance.now() < held)) {
      const m = this.pendingTx.shift();
      if (!m) {
        if (waited) break;
        waited = true;
        await nextTurn();
        this.stragglersCame = this.pendingTx.length > 0;
        continue;
      }
      group.push(m);
      // The first member needs no savepoint: if it fails, the whole transaction is its own.
      const first = group.length === 1;
      await this.runMember(m, first);
      if (first && !m.outcome!.ok) {
        if (this.writer.inTransaction) this.rollback.run();
        this.settle(group);
        return;
      }
      if (!this.writer.inTransaction) {
        // An error ended the whole transaction: the members before this one lost their writes
        // and run again; this one keeps its error.
        const lost = group.slice(0, -1);
        for (const l of lost) delete l.outcome;
        this.pendingTx.unshift(...lost);
        this.settle([m]);
        return;
      }
    }
    const committing = probed ? performance.now() : 0;
    try {
      // Deferred foreign keys are checked here: a failing COMMIT leaves the transaction open.
      this.commit.run();
    } catch (err) {
      if (this.writer.inTransaction) this.rollback.run();
      if (group.length === 1) {
        group[0]!.outcome = { ok: false, error: err };
        this.settle(group);
        return;
      }
      // Which member broke it is unknown: each runs again in a transaction of its own.
      for (const m of group) delete m.outcome;
      this.pendingTx.unshift(...group);
      this.solo += group.length;
      return;
    }
    if (probed) {
      const end = performance.now();
      groupChannel.publish({ size: group.length, holdMs: end - began, commitMs: end - committing });
    }
    if (this.committedTx < CHECKPOINTER_AFTER_TX && (this.committedTx += group.length) >= CHECKPOINTER_AFTER_TX)
      this.startCheckpointer();
    if (!this.walSync) return this.settle(group);
    // Answered once the COMMIT is on disk; the next group runs meanwhile (the queue is free).
    this.walSync.committed();
    this.walSync.durable().then(
      () => this.settle(group),
      (err: unknown) => {
        for (const m of group) m.outcome = { ok: false, error: err };
        this.settle(group);
      },
    );
  }

  /**
   * Resolves once every write committed so far would survive a power loss (see ./wal-sync.ts) —
   * also one another process committed to the same file: a flush that starts now.
   */
  whenDurable(): Promise<void> {
    return this.walSync ? this.walSync.flushedNow() : Promise.resolve();
  }

  /** A WAL flush that failed: every write fails from then on (./wal-sync.ts), until a restart. */
  durabilityFailure(): SigilError | undefined {
    return this.walSync?.failure();
  }

  /** Inside the queued task, right after a write outside a group committed: note it (close() then flushes it). */
  private committedAlone<T>(value: T): T {
    this.walSync?.committed();
    return value;
  }

  /** A write outside a group committed (`value` its result): hand it out once it is on disk. */
  private afterCommit<T>(value: T): Promise<T> | T {
    return this.walSync ? this.walSync.durable().then(() => value) : value;
  }

  /**
   * Checkpoints from now on in a worker (./checkpointer.ts), SQLite's own autocheckpoint raised to
   * a safety net once it runs, and put back if it fails. A worker that cannot start changes nothing.
   */
  private startCheckpointer(): void {
    const path = this.opts.checkpointPath;
    if (!path || this.closed) return;
    let cp: BackgroundCheckpointer;
    try {
      cp = new BackgroundCheckpointer(path);
    } catch {
      return;
    }
    this.checkpointer = cp;
    const own = (pages: number): void => {
      if (!this.closed && this.writer.open) this.writer.pragma(`wal_autocheckpoint = ${pages}`);
    };
    cp.ready.then(
      () => own(SAFETY_NET_PAGES),
      () => undefined,
    );
    cp.onFailure(() => own(DEFAULT_AUTOCHECKPOINT_PAGES));
  }

  /**
   * One member's `fn`, in its own savepoint (but the group's first, whose failure rolls back the
   * whole transaction); rolled back to it when `fn` throws.
   */
  private async runMember(m: Member, first: boolean): Promise<void> {
    if (!first) this.savepoint.run();
    const scope: TxScope = { open: true };
    try {
      const value = await m.fn(this.txStores(scope));
      scope.open = false;
      if (!first) this.releaseSavepoint.run();
      m.outcome = { ok: true, value };
    } catch (error) {
      scope.open = false;
      m.outcome = { ok: false, error };
      if (!first && this.writer.inTransaction) {
        this.rollbackToSavepoint.run();
        this.releaseSavepoint.run();
      }
    }
  }

  private settle(members: Member[]): void {
    for (const m of members) {
      const o = m.outcome!;
      if (o.ok) m.resolve(o.value);
      else m.reject(o.error);
    }
  }

  /** A read that is not a store method (the fleet view): as `dispatch` routes a read. */
  private readOutside<T>(read: () => T): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    if (!this.reader) return this.queue.run(read);
    try {
      return Promise.resolve(read());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A top-level call: reads on the read connection, writes as a transaction of their own. */
  private dispatch(store: StoreName, method: string, access: Access, args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(closedError());
    if (access === 'read' && this.read) return callSync(this.read, store, method, args);
    if (access === 'read') return this.queue.run(() => callSync(this.write, store, method, args));
    return this.queue
      .run(() => this.committedAlone(this.single.immediate(() => invokeSync(this.write, store, method, args))))
      .then((v) => this.afterCommit(v));
  }
}

function closedError(): TypeError {
  return new TypeError('the store is closed');
}
