/**
 * The issuer's stores on PostgreSQL (issue #15): several issuers on one database keep the
 * single-use, idempotency, generation and audit-chain guarantees of ../types.ts
 * (docs/store-postgres.md says how each is enforced).
 */
import type { PgAuditOptions } from './audit.js';
import { openPool, redactStoreUrl, type PostgresPoolOptions } from './connection.js';
import { migratePostgres } from './migrations.js';
import { PostgresStores } from './stores.js';
import { checkAuditKeyClaim } from './issuer-claim.js';

export { isPostgresUrl, redactStoreUrl, isUnavailable, toStoreError } from './connection.js';
export type { PostgresPoolOptions } from './connection.js';
export { PG_MIGRATIONS, PG_AUDIT_TRIGGERS, latestPgVersion, migratePostgres, pgSchemaVersion } from './migrations.js';
export { PostgresStores } from './stores.js';
export { TX_ATTEMPTS } from './db.js';
export { claimDatabase, checkAuditKeyClaim, checkDatabaseClaimable, AUDIT_KEY_SETTING } from './issuer-claim.js';

export interface PostgresStoreOptions extends PostgresPoolOptions {
  audit?: PgAuditOptions;
  /** Refuse to serve unless the database was claimed with this audit key (./issuer-claim.ts); the issuer sets it. */
  checkAuditKey?: boolean;
}

/**
 * Open the stores on the database at `url` (postgres://…). Synchronous: nothing connects yet;
 * migrations run now in the background and the first call waits for them (`stores.ready`).
 */
export function openPostgresStores(url: string, opts: PostgresStoreOptions = {}): PostgresStores {
  const pool = openPool(url, opts);
  const audit = opts.audit ?? {};
  return new PostgresStores(
    pool,
    audit,
    async () => {
      await migratePostgres(pool);
      if (opts.checkAuditKey) await checkAuditKeyClaim(pool, audit.key, redactStoreUrl(url));
    },
    redactStoreUrl(url),
  );
}
