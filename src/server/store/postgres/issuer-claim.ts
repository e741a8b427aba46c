/**
 * Which issuer a database belongs to. The audit chain is keyed (server/audit/audit-key.ts) and
 * every issuer on one database must chain with the SAME key, or the chain stops verifying at the
 * first row another issuer wrote. So the database records the key's id (never the key) when
 * `sigil server init --store postgres://…` claims it, and every issuer checks its own audit.key
 * against that record before its first call: a second issuer started from a freshly initialised
 * data directory (another CA, another key) is refused instead of forking trust and breaking the chain.
 */
import { SigilError } from '../../../errors.js';
import type { AuditEvent } from '../types.js';
import type { PgAuditOptions } from './audit.js';
import { openPool, redactStoreUrl, toStoreError, type Sql } from './connection.js';
import { TxDb } from './db.js';
import { migratePostgres } from './migrations.js';
import { pgStoreSet } from './stores.js';

/** settings key: {"id": <audit key id>, "from_seq": N} of the chain's key. */
export const AUDIT_KEY_SETTING = 'audit_key';
/** The advisory lock of the claim (init), so two `server init` runs cannot both claim one database. */
export const CLAIM_LOCK_KEY = 0x7369_6769_6c00_03n;

type Key = NonNullable<PgAuditOptions['key']>;

/**
 * Before `server init` writes any file: is the database reachable, migratable and unclaimed?
 * (`claimDatabase` checks again under its lock; this only spares a refused init its half-made directory.)
 */
export async function checkDatabaseClaimable(url: string): Promise<void> {
  const pool = openPool(url, { max: 1 });
  try {
    await migratePostgres(pool);
    await refuseClaimed(pool, url);
  } catch (err) {
    throw toStoreError(err, redactStoreUrl(url));
  } finally {
    await pool.end({ timeout: 5 });
  }
}

async function refuseClaimed(sql: Sql, url: string): Promise<void> {
  const [claimed] = await sql`SELECT 1 FROM settings WHERE key IN (${AUDIT_KEY_SETTING}, 'admin_token_hash')`;
  const [row] = await sql`SELECT 1 FROM audit_log LIMIT 1`;
  if (claimed || row)
    throw new SigilError(
      'already_initialized',
      `the database ${redactStoreUrl(url)} already holds an issuer's state; to run another issuer on it, copy the ` +
        'first data directory (ca/, audit.key, admin.token, issuer.json) and start it with the same --store',
    );
}

/**
 * Claim an empty database for a new issuer: migrate, then in one transaction check that no issuer
 * claimed it, record the key id, store the admin credential hash and append the first audit row
 * (keyed from seq 1). Refuses (`already_initialized`) a database that holds an issuer's state.
 */
export async function claimDatabase(
  url: string,
  o: { key: Key; adminTokenHash: string; event: AuditEvent; now: number },
): Promise<void> {
  const pool = openPool(url, { max: 1 });
  try {
    await migratePostgres(pool);
    await pool.begin(async (sql) => {
      await sql`SELECT pg_advisory_xact_lock(${CLAIM_LOCK_KEY.toString()}::bigint)`;
      await refuseClaimed(sql, url);
      await sql`INSERT INTO settings (key, value) VALUES (${AUDIT_KEY_SETTING}, ${JSON.stringify({ id: o.key.id, from_seq: o.key.fromSeq })})`;
      const tx = new TxDb(sql);
      const stores = pgStoreSet(tx, { key: o.key });
      await stores.admin.setAdminTokenHash(o.adminTokenHash);
      await stores.audit.append(o.event, o.now);
      tx.end();
    });
  } catch (err) {
    throw toStoreError(err, redactStoreUrl(url));
  } finally {
    await pool.end({ timeout: 5 });
  }
}

/** Refuse an audit key other than the one the database was claimed with (see the file header). */
export async function checkAuditKeyClaim(sql: Sql, key: Key | undefined, where: string): Promise<void> {
  const [row] = await sql<{ value: string }[]>`SELECT value FROM settings WHERE key = ${AUDIT_KEY_SETTING}`;
  if (!row)
    throw new SigilError(
      'not_initialized',
      `the database ${where} holds no issuer (run: sigil server init --store … first)`,
    );
  const claimed = JSON.parse(row.value) as { id: string; from_seq: number };
  if (!key || key.id !== claimed.id || key.fromSeq !== claimed.from_seq)
    throw new SigilError(
      'config_invalid',
      `this data directory's audit key (${key ? `id ${key.id}` : 'none'}) is not the key the audit chain in ${where} ` +
        `is kept with (id ${claimed.id}): every issuer on one database needs the same audit.key — copy it from the first issuer's data directory`,
    );
}
