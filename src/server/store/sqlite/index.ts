/**
 * The issuer's stores on one SQLite file (the embedded default; ARCHITECTURE "Scale-out").
 * Several processes may open the same file: WAL lets readers run alongside the single writer,
 * and every write transaction begins IMMEDIATE so writers queue on busy_timeout instead of
 * failing half-way with SQLITE_BUSY.
 */
import type { AuditStore, Stores } from '../types.js';
import { asyncView } from './async-access.js';
import { openAsyncSqliteStores, type AsyncSqliteOptions } from './async.js';
import type { SqliteAuditStore } from './audit.js';

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

export { AsyncSqliteStores, asyncSqliteStoresOn, openAsyncSqliteStores } from './async.js';
export type { AsyncSqliteOptions } from './async.js';
export { openSyncSqliteStores, syncSqliteStores } from './sync.js';
export type { SyncStores } from './sync-types.js';

/**
 * Open (creating and migrating if needed) the issuer database at `path` behind the async store
 * contract (../types.ts; ./async.ts); its directory must exist. `:memory:` for tests.
 */
export function openSqliteStores(path: string, opts: AsyncSqliteOptions = {}): Stores {
  return openAsyncSqliteStores(path, opts);
}

/** A synchronous audit store (say, on doctor's read-only connection) as the async AuditStore (server/audit/verify.ts takes). */
export function asyncAuditStore(audit: SqliteAuditStore): AuditStore {
  return asyncView('audit', audit);
}
