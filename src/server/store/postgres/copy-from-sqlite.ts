/**
 * Move an issuer's state from its SQLite file to an empty PostgreSQL database
 * (`sigil server migrate-store`, issue #15; docs/store-postgres.md "Moving an issuer").
 *
 * All or nothing: every row is copied inside ONE PostgreSQL transaction, which then verifies the
 * audit chain it just wrote (with the issuer's audit key, through the same PgAuditStore the issuers
 * use) and commits only if the chain verifies; any failure rolls back, leaving the database as
 * empty as it was. The audit rows are copied column for column with their stored prev_hash/hash:
 * nothing is re-hashed, so a row edited in the SQLite file (or mangled on the way) fails the
 * verification instead of being laundered into a fresh, valid-looking chain.
 *
 * The SQLite file is read inside BEGIN IMMEDIATE: a forgotten running issuer cannot write between
 * the first and the last table read (it waits, then fails its write with store_busy).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { SigilError } from '../../../errors.js';
import type { AuditKey } from '../../audit/audit-key.js';
import { openPool, redactStoreUrl, toStoreError, type Sql } from './connection.js';
import { PgAuditStore } from './audit.js';
import { TxDb } from './db.js';
import { AUDIT_KEY_SETTING, CLAIM_LOCK_KEY } from './issuer-claim.js';
import { migratePostgres } from './migrations.js';

/**
 * The tables that hold an issuer's state, in insert order. A SQLite table not listed here (and
 * not SQLite's or the migration runner's own) makes the move refuse: state this code does not
 * know how to move must not be silently left behind.
 */
export const MOVED_TABLES = [
  'settings',
  'resources',
  'join_tokens',
  'instances',
  'bot_locks',
  'certificates',
  'idempotency',
  'join_challenges',
  'devices',
  'join_key_bindings',
  'token_replay',
  'audit_anchor',
  'audit_log',
  // Issue #15, one intermediate per issuer (docs/issuers.md): SQLite migration 8, PostgreSQL 3.
  'issuers',
  'crl_numbers',
] as const;

/** Not moved: the migration runner's own table, and fleet-view sessions (operators sign in again). */
const NOT_STATE = new Set(['schema_migrations', 'ui_sessions']);

/** Rows read from SQLite per batch, and the PostgreSQL bind-parameter limit a batch must stay under. */
const BATCH_ROWS = 2000;
const MAX_PARAMS = 60_000;

export interface CopyResult {
  /** Rows copied per table. */
  rows: Record<string, number>;
  /** Audit rows the chain verification walked in PostgreSQL (after the newest anchor). */
  auditVerified: number;
}

interface PgColumn {
  name: string;
  type: string;
  identity: boolean;
}

/**
 * Copy everything from `db` (an issuer's SQLite file, migrated to the current schema) into the
 * empty database at `url`, claim it with `key`, verify the chain there, commit. Throws (and
 * leaves the database unchanged) on a non-empty target, an unknown table, or a chain that does
 * not verify after the copy.
 */
export async function copySqliteToPostgres(
  db: BetterSqlite3.Database,
  url: string,
  key: AuditKey,
): Promise<CopyResult> {
  const where = redactStoreUrl(url);
  checkKnownTables(db);
  const pool = openPool(url, { max: 1, applicationName: 'sigil-migrate-store' });
  let reading = false;
  try {
    db.exec('BEGIN IMMEDIATE');
    reading = true;
    await migratePostgres(pool);
    return (await pool.begin(async (sql) => {
      // The lock `server init` claims a database under: an init racing this move waits, then refuses.
      await sql`SELECT pg_advisory_xact_lock(${CLAIM_LOCK_KEY.toString()}::bigint)`;
      await refuseNonEmpty(sql, where);
      const rows: Record<string, number> = {};
      for (const table of MOVED_TABLES) rows[table] = await copyTable(db, sql, table);
      await sql`INSERT INTO settings (key, value) VALUES (${AUDIT_KEY_SETTING}, ${JSON.stringify({ id: key.id, from_seq: key.fromSeq })})`;
      const tx = new TxDb(sql);
      const verdict = await new PgAuditStore(tx, key).verify();
      tx.end();
      if (!verdict.ok)
        throw new SigilError(
          'audit_chain_broken',
          `the audit chain copied to ${where} does not verify (${verdict.reason} at row ${verdict.brokenAt}): ` +
            'nothing was written there; the SQLite file has been edited or damaged — restore it from a backup, or find out who changed it, before moving',
        );
      if (verdict.rows !== rows['audit_log'])
        throw new SigilError(
          'audit_chain_broken',
          `the audit chain copied to ${where} verified ${verdict.rows} of ${rows['audit_log']} rows (rows before the newest anchor?): nothing was written there`,
        );
      return { rows, auditVerified: verdict.rows };
    })) as CopyResult;
  } catch (err) {
    throw toStoreError(err, where);
  } finally {
    if (reading) db.exec('ROLLBACK');
    await pool.end({ timeout: 5 });
  }
}

function checkKnownTables(db: BetterSqlite3.Database): void {
  const names = db
    .prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    .pluck()
    .all();
  const known = new Set<string>(MOVED_TABLES);
  const unknown = names.filter((n) => !known.has(n) && !NOT_STATE.has(n));
  if (unknown.length > 0)
    throw new SigilError(
      'config_invalid',
      `the SQLite store has table(s) this Sigil cannot move to PostgreSQL: ${unknown.join(', ')}; nothing was moved`,
    );
}

/** The target must hold no issuer and no rows at all (not even a half-finished earlier attempt's: there are none, it rolled back). */
async function refuseNonEmpty(sql: Sql, where: string): Promise<void> {
  for (const table of MOVED_TABLES) {
    const [row] = await sql.unsafe(`SELECT EXISTS (SELECT 1 FROM ${table}) AS has`);
    if ((row as unknown as { has: boolean }).has)
      throw new SigilError(
        'already_initialized',
        `the database ${where} is not empty (table ${table} has rows): migrate-store only moves an issuer into an empty database; nothing was written`,
      );
  }
}

async function pgColumns(sql: Sql, table: string): Promise<Map<string, PgColumn>> {
  const rows = await sql<{ column_name: string; data_type: string; is_identity: string }[]>`
    SELECT column_name, data_type, is_identity FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ${table}`;
  return new Map(
    rows.map((r) => [r.column_name, { name: r.column_name, type: r.data_type, identity: r.is_identity === 'YES' }]),
  );
}

/** Copy one table in batches; SQLite 0/1 becomes a PostgreSQL boolean where the column is one. */
async function copyTable(db: BetterSqlite3.Database, sql: Sql, table: string): Promise<number> {
  const target = await pgColumns(sql, table);
  const read = db.prepare(`SELECT rowid AS "__rowid", * FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT ?`);
  const columns = read
    .columns()
    .map((c) => c.name)
    .filter((c) => c !== '__rowid');
  const missing = columns.filter((c) => !target.has(c));
  if (missing.length > 0)
    throw new SigilError(
      'config_invalid',
      `PostgreSQL table ${table} has no column(s) ${missing.join(', ')} of the SQLite store; nothing was moved`,
    );
  const cols = columns.map((c) => target.get(c)!);
  const overriding = cols.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const perStatement = Math.max(1, Math.floor(MAX_PARAMS / cols.length));
  let after = 0;
  let copied = 0;
  for (;;) {
    const batch = read.all(after, BATCH_ROWS) as Array<Record<string, unknown>>;
    if (batch.length === 0) break;
    after = batch[batch.length - 1]!['__rowid'] as number;
    for (let i = 0; i < batch.length; i += perStatement) {
      const part = batch.slice(i, i + perStatement);
      const params: unknown[] = [];
      const tuples = part.map((row) => {
        const marks = cols.map((c) => {
          params.push(toPg(row[c.name], c));
          return `$${params.length}`;
        });
        return `(${marks.join(', ')})`;
      });
      await sql.unsafe(
        `INSERT INTO ${table} (${columns.join(', ')})${overriding} VALUES ${tuples.join(', ')}`,
        params as never[],
      );
    }
    copied += batch.length;
  }
  // An identity column continues after the copied ids (devices.id), not at 1.
  for (const c of cols.filter((x) => x.identity))
    await sql.unsafe(
      `SELECT setval(pg_get_serial_sequence('${table}', '${c.name}'), (SELECT max(${c.name}) FROM ${table})) WHERE EXISTS (SELECT 1 FROM ${table})`,
    );
  return copied;
}

function toPg(v: unknown, c: PgColumn): unknown {
  if (v === null || v === undefined) return null;
  if (c.type === 'boolean') return v === 1 || v === 1n || v === true;
  if (typeof v === 'bigint') return v.toString();
  return v;
}
