/**
 * The synchronous SQLite stores (./sync-types.ts) over one better-sqlite3 connection: what
 * ./async.ts adapts to the async contract, and what offline tools and tests that need the
 * synchronous implementation itself use. The issuer never uses them directly.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SyncStores } from './sync-types.js';
import { SqliteAdminCredentialStore } from './admin.js';
import { SqliteAuditStore, type SqliteAuditOptions } from './audit.js';
import { SqliteBotLockStore } from './bot-locks.js';
import { SqliteCertificateStore } from './certificates.js';
import { SqliteChallengeStore } from './challenges.js';
import { openSqlite } from './db.js';
import { SqliteDeviceStore } from './devices.js';
import { SqliteIdempotencyStore } from './idempotency.js';
import { SqliteInstanceStore } from './instances.js';
import { SqliteKeyBindingStore } from './key-bindings.js';
import { SqliteResourceStore } from './resources.js';
import { SqliteTokenReplayStore } from './token-replay.js';
import { SqliteTokenStore } from './tokens.js';

/** Open (creating and migrating if needed) the database at `path`; its directory must exist. */
export function openSyncSqliteStores(path: string, opts: { audit?: SqliteAuditOptions } = {}): SyncStores {
  return syncSqliteStores(openSqlite(path), opts);
}

/** Synchronous stores over an already opened and migrated connection; `close()` closes it. */
export function syncSqliteStores(db: BetterSqlite3.Database, opts: { audit?: SqliteAuditOptions } = {}): SyncStores {
  // One transaction wrapper for the life of the connection. Called while a transaction is
  // already open (a nested `tx`, or a store method that wraps itself), better-sqlite3 runs it
  // as SAVEPOINT/RELEASE instead, so a throw inside rolls back only the inner part unless it
  // propagates (then the outer transaction rolls back too).
  const run = db.transaction((fn: () => unknown) => fn());
  return {
    resources: new SqliteResourceStore(db),
    tokens: new SqliteTokenStore(db),
    challenges: new SqliteChallengeStore(db),
    devices: new SqliteDeviceStore(db),
    keyBindings: new SqliteKeyBindingStore(db),
    tokenReplay: new SqliteTokenReplayStore(db),
    instances: new SqliteInstanceStore(db),
    botLocks: new SqliteBotLockStore(db),
    certificates: new SqliteCertificateStore(db),
    idempotency: new SqliteIdempotencyStore(db),
    audit: new SqliteAuditStore(db, opts.audit),
    admin: new SqliteAdminCredentialStore(db),
    tx<T>(fn: () => T): T {
      return run.immediate(fn) as T;
    },
    close(): void {
      db.close();
    },
  };
}
