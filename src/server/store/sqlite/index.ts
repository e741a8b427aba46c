/**
 * The issuer's stores on one SQLite file (the embedded default; ARCHITECTURE "Scale-out").
 * Several processes may open the same file: WAL lets readers run alongside the single writer,
 * and every write transaction begins IMMEDIATE so writers queue on busy_timeout instead of
 * failing half-way with SQLITE_BUSY.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Stores } from '../types.js';
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

export { openSqlite } from './db.js';
export { MIGRATIONS, latestVersion, migrate, schemaVersion } from './migrations.js';
export type { Migration } from './migrations.js';
export { canonicalJson } from './canonical-json.js';
export { AUDIT_GENESIS_HASH, AUDIT_TRIGGERS, auditRowHash, SqliteAuditStore, VERIFY_CHUNK_ROWS } from './audit.js';
export type { SqliteAuditOptions } from './audit.js';
export { SqliteAdminCredentialStore } from './admin.js';
export { SqliteBotLockStore } from './bot-locks.js';
export { SqliteCertificateStore } from './certificates.js';
export { SqliteChallengeStore } from './challenges.js';
export { SqliteDeviceStore } from './devices.js';
export { SqliteIdempotencyStore } from './idempotency.js';
export { SqliteInstanceStore } from './instances.js';
export { SqliteKeyBindingStore } from './key-bindings.js';
export { SqliteResourceStore } from './resources.js';
export { SqliteTokenReplayStore } from './token-replay.js';
export { SqliteTokenStore } from './tokens.js';

/** Open (creating and migrating if needed) the database at `path`; its directory must exist. */
export function openSqliteStores(path: string, opts: { audit?: SqliteAuditOptions } = {}): Stores {
  return sqliteStores(openSqlite(path), opts);
}

/** Stores over an already opened and migrated connection; `close()` closes it. */
export function sqliteStores(db: BetterSqlite3.Database, opts: { audit?: SqliteAuditOptions } = {}): Stores {
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
