/**
 * The issuer's stores on PostgreSQL (issue #15): several issuers on one database keep the
 * single-use, idempotency, generation and audit-chain guarantees of ../types.ts
 * (docs/store-postgres.md says how each is enforced).
 */
import type { PgAuditOptions } from './audit.js';
import { PgChangeFeed, type ChangeFeedOptions } from './change-feed.js';
import { openListener, openPool, redactStoreUrl, type PostgresPoolOptions } from './connection.js';
import { migratePostgres } from './migrations.js';
import { PostgresStores } from './stores.js';
import { checkAuditKeyClaim } from './issuer-claim.js';

export { isPostgresUrl, redactStoreUrl, isUnavailable, toStoreError } from './connection.js';
export type { PostgresPoolOptions } from './connection.js';
export { PG_MIGRATIONS, PG_AUDIT_TRIGGERS, latestPgVersion, migratePostgres, pgSchemaVersion } from './migrations.js';
export { PostgresStores } from './stores.js';
export { PgChangeFeed, CHANGE_CHANNEL, type ChangeEvent, type ChangeTopic } from './change-feed.js';
export { TX_ATTEMPTS } from './db.js';
export { claimDatabase, checkAuditKeyClaim, checkDatabaseClaimable, AUDIT_KEY_SETTING } from './issuer-claim.js';

export interface PostgresStoreOptions extends PostgresPoolOptions {
  audit?: PgAuditOptions;
  /** Refuse to serve unless the database was claimed with this audit key (./issuer-claim.ts); the issuer sets it. */
  checkAuditKey?: boolean;
  /**
   * Cache policy and bot locks, kept correct by LISTEN/NOTIFY (./change-feed.ts, ./policy-cache.ts).
   * Default: on for an issuer (`checkAuditKey`), off otherwise (a one-shot command gains nothing).
   * `false` or options for the feed (tests shorten its heartbeat).
   */
  changeFeed?: boolean | ChangeFeedOptions;
}

/**
 * Open the stores on the database at `url` (postgres://…). Synchronous: nothing connects yet;
 * migrations run now in the background and the first call waits for them (`stores.ready`).
 */
export function openPostgresStores(url: string, opts: PostgresStoreOptions = {}): PostgresStores {
  const pool = openPool(url, opts);
  const audit = opts.audit ?? {};
  const feedOpts = opts.changeFeed ?? opts.checkAuditKey ?? false;
  const changes =
    feedOpts === false
      ? undefined
      : new PgChangeFeed((handlers) => openListener(url, { ...opts, ...handlers }), feedOpts === true ? {} : feedOpts);
  const stores = new PostgresStores(
    pool,
    audit,
    async () => {
      await migratePostgres(pool);
      if (opts.checkAuditKey) await checkAuditKeyClaim(pool, audit.key, redactStoreUrl(url));
    },
    redactStoreUrl(url),
    changes,
  );
  // After the migrations (LISTEN on a database being created would only fail and retry).
  if (changes)
    void stores.ready.then(
      () => changes.start(),
      () => undefined,
    );
  return stores;
}
