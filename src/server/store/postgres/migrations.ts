/**
 * Numbered schema migrations for the issuer's PostgreSQL database (the same rules as
 * ../sqlite/migrations.ts: never edit a shipped migration, add the next version).
 *
 * Several issuers may start at once against a new database: every pending migration runs in ONE
 * transaction that first takes a transaction-level advisory lock (`pg_advisory_xact_lock`), so the
 * first issuer migrates and the others wait, then find nothing to do; a failing migration leaves
 * the database as it was (DDL is transactional in PostgreSQL). An up-to-date database is only
 * read (no lock).
 *
 * Schema conventions, chosen to behave like the SQLite schema: times BIGINT unix milliseconds,
 * booleans BOOLEAN, JSON documents TEXT holding canonical JSON (not jsonb: the audit chain hashes
 * the exact text, and jsonb would re-order keys), checked with a cast to json.
 */
import { SigilError } from '../../../errors.js';
import type { Pool, Sql } from './connection.js';

export interface PgMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The advisory lock key of the migration runner: "sigil" + 1 (any fixed 64-bit value works; it names this use). */
export const MIGRATION_LOCK_KEY = 0x7369_6769_6c00_01n;

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'issuer schema (SQLite migrations 1-6 in one)',
    sql: `
CREATE TABLE resources (
  kind        TEXT    NOT NULL CHECK (kind IN ('role', 'bot', 'join_rule', 'workload')),
  name        TEXT    NOT NULL,
  spec        TEXT    NOT NULL CHECK (spec::json IS NOT NULL),
  created_at  BIGINT  NOT NULL,
  updated_at  BIGINT  NOT NULL,
  PRIMARY KEY (kind, name)
);

CREATE TABLE join_tokens (
  hash        TEXT    PRIMARY KEY,
  bot         TEXT    NOT NULL,
  created_at  BIGINT  NOT NULL,
  expires_at  BIGINT  NOT NULL,
  used_at     BIGINT,
  used_by     TEXT,
  CHECK ((used_at IS NULL) = (used_by IS NULL))
);

CREATE TABLE instances (
  id                TEXT    PRIMARY KEY,
  bot               TEXT    NOT NULL,
  join_method       TEXT    NOT NULL,
  spiffe_id         TEXT    NOT NULL,
  generation        BIGINT  NOT NULL CHECK (generation >= 0),
  locked            BOOLEAN NOT NULL DEFAULT false,
  lock_reason       TEXT,
  facts             TEXT    NOT NULL CHECK (facts::json IS NOT NULL),
  key_storage       TEXT    NOT NULL CHECK (key_storage IN ('software', 'tpm', 'pkcs11')),
  exportable        BOOLEAN NOT NULL,
  created_at        BIGINT  NOT NULL,
  updated_at        BIGINT  NOT NULL,
  last_seen_at      BIGINT  NOT NULL,
  current_serial    TEXT,
  current_not_after BIGINT
);
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_bot_created ON instances (bot, created_at, id);

CREATE TABLE bot_locks (
  bot     TEXT    PRIMARY KEY,
  reason  TEXT,
  at      BIGINT  NOT NULL
);

CREATE TABLE certificates (
  serial       TEXT    PRIMARY KEY CHECK (serial ~ '^[0-9a-f]+$'),
  -- Deferred: a join creates the instance and its first certificate in one transaction, in
  -- either order; the reference is still enforced at COMMIT.
  instance_id  TEXT    NOT NULL REFERENCES instances (id) DEFERRABLE INITIALLY DEFERRED,
  bot          TEXT    NOT NULL,
  generation   BIGINT  NOT NULL,
  not_before   BIGINT  NOT NULL,
  not_after    BIGINT  NOT NULL,
  kind         TEXT    NOT NULL,
  key_storage  TEXT    NOT NULL CHECK (key_storage IN ('software', 'tpm', 'pkcs11')),
  exportable   BOOLEAN NOT NULL,
  spki_hash    TEXT    NOT NULL,
  request_id   TEXT    NOT NULL,
  issued_at    BIGINT  NOT NULL
);
CREATE INDEX certificates_instance ON certificates (instance_id, generation, issued_at);

CREATE TABLE idempotency (
  request_id    TEXT    PRIMARY KEY,
  request_hash  TEXT    NOT NULL,
  signer        TEXT    NOT NULL DEFAULT '',
  op            TEXT    NOT NULL,
  response      TEXT    NOT NULL,
  created_at    BIGINT  NOT NULL
);
CREATE INDEX idempotency_created ON idempotency (created_at);

CREATE TABLE settings (
  key    TEXT PRIMARY KEY,
  value  TEXT NOT NULL
);

CREATE TABLE join_challenges (
  id          TEXT    PRIMARY KEY,
  method      TEXT    NOT NULL,
  request_id  TEXT    NOT NULL,
  spki_hash   TEXT    NOT NULL,
  nonce       BYTEA   NOT NULL,
  state       TEXT    NOT NULL CHECK (state::json IS NOT NULL),
  created_at  BIGINT  NOT NULL,
  expires_at  BIGINT  NOT NULL,
  used_at     BIGINT
);
CREATE INDEX join_challenges_expires ON join_challenges (expires_at);

CREATE TABLE devices (
  id                  BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule                TEXT,
  serial              TEXT    NOT NULL,
  ek_public_hash      TEXT,
  idevid_fingerprint  TEXT    NOT NULL UNIQUE CHECK (idevid_fingerprint LIKE 'sha256:%'),
  manifest            TEXT    NOT NULL CHECK (manifest::json IS NOT NULL),
  imported_at         BIGINT  NOT NULL
);
CREATE INDEX devices_rule ON devices (rule, serial);

CREATE TABLE join_key_bindings (
  method      TEXT    NOT NULL,
  subject     TEXT    NOT NULL,
  key_hash    TEXT    NOT NULL CHECK (key_hash LIKE 'sha256:%'),
  rule        TEXT    NOT NULL,
  facts       TEXT    NOT NULL CHECK (facts::json IS NOT NULL),
  created_at  BIGINT  NOT NULL,
  PRIMARY KEY (method, subject)
);

CREATE TABLE token_replay (
  issuer      TEXT    NOT NULL,
  jti         TEXT    NOT NULL,
  expires_at  BIGINT  NOT NULL,
  used_at     BIGINT  NOT NULL,
  PRIMARY KEY (issuer, jti)
);
CREATE INDEX token_replay_expires ON token_replay (expires_at);

CREATE TABLE audit_log (
  seq          BIGINT  PRIMARY KEY,
  at           BIGINT  NOT NULL,
  action       TEXT    NOT NULL,
  outcome      TEXT    NOT NULL,
  code         TEXT,
  bot          TEXT,
  instance_id  TEXT,
  method       TEXT,
  actor        TEXT    NOT NULL,
  remote       TEXT,
  details      TEXT    NOT NULL CHECK (details::json IS NOT NULL),
  prev_hash    TEXT    NOT NULL UNIQUE,  -- UNIQUE: the chain cannot fork
  hash         TEXT    NOT NULL UNIQUE
);
CREATE INDEX audit_log_at ON audit_log (at, seq);

CREATE TABLE audit_anchor (
  seq         BIGINT  PRIMARY KEY,
  hash        TEXT    NOT NULL,
  at          BIGINT  NOT NULL,
  pruned      BIGINT  NOT NULL CHECK (pruned >= 0),
  checkpoint  TEXT    NOT NULL CHECK (checkpoint::json IS NOT NULL)
);

-- Append-only against Sigil's own bugs and careless hands (a role that owns the tables can drop
-- or disable these; the hash chain and the signed checkpoints are what detect that).
CREATE FUNCTION sigil_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
-- Rows at or below the newest anchor may go (a prune inserts the anchor, then deletes, in one
-- transaction); every other delete is refused.
CREATE FUNCTION sigil_audit_log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.seq > (SELECT coalesce(max(seq), 0) FROM audit_anchor) THEN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION sigil_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION sigil_audit_log_delete();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION sigil_append_only();
CREATE TRIGGER audit_anchor_no_update BEFORE UPDATE ON audit_anchor
  FOR EACH ROW EXECUTE FUNCTION sigil_append_only();
CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
  FOR EACH ROW EXECUTE FUNCTION sigil_append_only();
CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
  FOR EACH STATEMENT EXECUTE FUNCTION sigil_append_only();
`,
  },
  {
    version: 2,
    name: 'fleet view state columns and indexes (SQLite migration 7)',
    sql: `
-- The fleet view (issue #18): the same two state columns as SQLite's migration 7, plain columns
-- written with the row (see there). Indexes only on columns a renewal does not change, so a
-- renewal's UPDATE of the instance row stays a HOT update (no index entry written at all);
-- expiry order, the state counts and filters are a scan of the table instead (bench/fleet-page.ts:
-- within budget at 100,000). Text keys are indexed COLLATE "C": the fleet queries order and
-- compare them byte-wise, as SQLite does, which an index in the database's default collation
-- would not serve. The partial indexes' predicates change only with a lock or an attestation.
ALTER TABLE instances ADD COLUMN current_not_before BIGINT;
ALTER TABLE instances ADD COLUMN attestation_ok BOOLEAN;
UPDATE instances SET current_not_before = c.not_before
  FROM certificates c WHERE c.serial = instances.current_serial;
UPDATE instances SET attestation_ok = (facts::json #>> '{attestation,ok}')::boolean
 WHERE json_typeof(facts::json #> '{attestation,ok}') = 'boolean';
CREATE INDEX instances_fleet_id ON instances (id COLLATE "C");
CREATE INDEX instances_fleet_bot ON instances (bot COLLATE "C", id COLLATE "C");
CREATE INDEX instances_fleet_method ON instances (join_method COLLATE "C", id COLLATE "C");
CREATE INDEX instances_fleet_attestation_failed ON instances (id COLLATE "C") WHERE attestation_ok = false;
CREATE INDEX instances_fleet_locked ON instances (id COLLATE "C") WHERE locked;
-- A machine's audit history (the machine page), newest first, without walking the whole log.
CREATE INDEX audit_log_instance ON audit_log (instance_id, seq);
`,
  },
  {
    version: 3,
    name: 'issuer registry and cRLNumber counters (SQLite migration 8)',
    sql: `
-- One intermediate per issuer (issue #15; docs/issuers.md); see SQLite's migration 8.
CREATE TABLE issuers (
  name        TEXT COLLATE "C" PRIMARY KEY CHECK (name ~ '^[a-z0-9-]{1,32}$'),
  cert_pem    TEXT   NOT NULL,
  status      TEXT   NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
  reason      TEXT,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE TABLE crl_numbers (
  crl_issuer  TEXT COLLATE "C" PRIMARY KEY,
  n           BIGINT NOT NULL CHECK (n > 0)
);
`,
  },
  {
    version: 4,
    name: 'fleet-view sessions (SQLite migration 10)',
    sql: `
-- Fleet-view sessions shared by every issuer on the database (docs/fleet-ui.md); see SQLite's
-- migration 10. Not moved by server migrate-store: sessions are short-lived, operators sign in again.
CREATE TABLE ui_sessions (
  id_hash       TEXT COLLATE "C" PRIMARY KEY CHECK (length(id_hash) = 64),
  user_name     TEXT   NOT NULL,
  role          TEXT   NOT NULL CHECK (role IN ('admin', 'viewer')),
  created_at    BIGINT NOT NULL,
  last_seen_at  BIGINT NOT NULL,
  remote        TEXT   NOT NULL,
  credential    TEXT   NOT NULL,
  seal          TEXT   NOT NULL
);
CREATE INDEX ui_sessions_user ON ui_sessions (user_name, last_seen_at);
CREATE INDEX ui_sessions_seen ON ui_sessions (last_seen_at);
`,
  },
];

/** The append-only triggers migration 1 creates; `AuditStore.triggers()` reports each missing or disabled one. */
export const PG_AUDIT_TRIGGERS = [
  'audit_log_no_update',
  'audit_log_no_delete',
  'audit_log_no_truncate',
  'audit_anchor_no_update',
  'audit_anchor_no_delete',
  'audit_anchor_no_truncate',
] as const;

export function latestPgVersion(migrations: readonly PgMigration[] = PG_MIGRATIONS): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
}

/** The database's schema version (0 when never migrated). */
export async function pgSchemaVersion(sql: Sql): Promise<number> {
  // Two statements: a query naming a table that does not exist fails at planning, even in a branch never taken.
  const [has] = await sql<{ t: string | null }[]>`SELECT to_regclass('schema_migrations')::text AS t`;
  if (!has?.t) return 0;
  const [row] = await sql<{ v: number | null }[]>`SELECT max(version) AS v FROM schema_migrations`;
  return row?.v ?? 0;
}

/**
 * Bring the database up to the newest schema; returns the version after migrating. Refuses
 * (SigilError 'internal') a database written by a newer Sigil, rather than guessing.
 */
export async function migratePostgres(pool: Pool, migrations: readonly PgMigration[] = PG_MIGRATIONS): Promise<number> {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new TypeError(`migration #${i} has version ${m.version}; versions must be 1, 2, 3, ... in order`);
  });
  const latest = latestPgVersion(migrations);
  // Fast path without the lock: many issuers may open an up-to-date database at once.
  if (checked(await pgSchemaVersion(pool), latest) === latest) return latest;
  await pool.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
      version     INTEGER PRIMARY KEY,
      name        TEXT    NOT NULL,
      applied_at  BIGINT  NOT NULL
    )`.simple();
    // Re-read under the lock: another issuer may have migrated meanwhile.
    const current = checked(await pgSchemaVersion(tx), latest);
    for (const m of migrations) {
      if (m.version <= current) continue;
      await tx.unsafe(m.sql).simple();
      await tx`INSERT INTO schema_migrations (version, name, applied_at) VALUES (${m.version}, ${m.name}, ${Date.now()})`;
    }
  });
  return latest;
}

function checked(current: number, latest: number): number {
  if (current > latest) {
    throw new SigilError(
      'store_schema_newer',
      `the database schema is version ${current}, newer than this Sigil knows (${latest}); ` +
        'run the Sigil version that wrote it, or a newer one',
    );
  }
  return current;
}
