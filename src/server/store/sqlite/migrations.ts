/**
 * Numbered schema migrations for the issuer's SQLite database.
 *
 * Rules: never edit a migration that has shipped; add a new one with the next version. Every
 * pending migration runs inside one BEGIN IMMEDIATE transaction, so two processes opening the
 * same new file serialise (the second waits on busy_timeout, then finds nothing to do) and a
 * failing migration leaves the file exactly as it was.
 *
 * Conventions: times are INTEGER unix milliseconds, booleans INTEGER 0/1, JSON documents TEXT.
 * Tables are STRICT so a wrongly typed value is an error instead of a silent coercion.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { SigilError } from '../../../errors.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial issuer schema',
    sql: `
CREATE TABLE resources (
  kind        TEXT    NOT NULL CHECK (kind IN ('role', 'bot', 'join_rule')),
  name        TEXT    NOT NULL,
  spec        TEXT    NOT NULL CHECK (json_valid(spec)),  -- canonical JSON
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
) STRICT;

CREATE TABLE join_tokens (
  hash        TEXT    PRIMARY KEY,                        -- hex sha256 of the secret
  bot         TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER,
  used_by     TEXT,
  CHECK ((used_at IS NULL) = (used_by IS NULL))
) STRICT;

CREATE TABLE instances (
  id                TEXT    PRIMARY KEY,
  bot               TEXT    NOT NULL,
  join_method       TEXT    NOT NULL,
  spiffe_id         TEXT    NOT NULL,
  generation        INTEGER NOT NULL CHECK (generation >= 0),
  locked            INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
  lock_reason       TEXT,
  facts             TEXT    NOT NULL CHECK (json_valid(facts)),
  key_storage       TEXT    NOT NULL CHECK (key_storage IN ('software', 'tpm', 'pkcs11')),
  exportable        INTEGER NOT NULL CHECK (exportable IN (0, 1)),
  created_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL,
  last_seen_at      INTEGER NOT NULL,
  current_serial    TEXT,
  current_not_after INTEGER
) STRICT;
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_bot_created ON instances (bot, created_at, id);

CREATE TABLE bot_locks (
  bot     TEXT    PRIMARY KEY,
  reason  TEXT,
  at      INTEGER NOT NULL
) STRICT;

CREATE TABLE certificates (
  serial       TEXT    PRIMARY KEY CHECK (length(serial) > 0 AND serial NOT GLOB '*[^0-9a-f]*'),
  -- Deferred: a join creates the instance and its first certificate in one transaction, in
  -- either order; the reference is still enforced at COMMIT.
  instance_id  TEXT    NOT NULL REFERENCES instances (id) DEFERRABLE INITIALLY DEFERRED,
  bot          TEXT    NOT NULL,
  generation   INTEGER NOT NULL,
  not_before   INTEGER NOT NULL,
  not_after    INTEGER NOT NULL,
  kind         TEXT    NOT NULL,
  key_storage  TEXT    NOT NULL CHECK (key_storage IN ('software', 'tpm', 'pkcs11')),
  exportable   INTEGER NOT NULL CHECK (exportable IN (0, 1)),
  spki_hash    TEXT    NOT NULL,
  request_id   TEXT    NOT NULL,
  issued_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX certificates_instance ON certificates (instance_id, generation, issued_at);

CREATE TABLE idempotency (
  request_id    TEXT    PRIMARY KEY,
  request_hash  TEXT    NOT NULL,
  op            TEXT    NOT NULL,
  response      TEXT    NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_created ON idempotency (created_at);

CREATE TABLE audit_log (
  seq          INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,
  action       TEXT    NOT NULL,
  outcome      TEXT    NOT NULL,
  code         TEXT,
  bot          TEXT,
  instance_id  TEXT,
  method       TEXT,
  actor        TEXT    NOT NULL,
  remote       TEXT,
  details      TEXT    NOT NULL CHECK (json_valid(details)),  -- canonical JSON
  prev_hash    TEXT    NOT NULL UNIQUE,                       -- UNIQUE: the chain cannot fork
  hash         TEXT    NOT NULL UNIQUE
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at, seq);
-- Append-only against Sigil's own bugs. Someone with write access to the file can drop these;
-- the hash chain is what detects that (AuditStore.verify).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE settings (
  key    TEXT PRIMARY KEY,
  value  TEXT NOT NULL
) STRICT;
`,
  },
  {
    version: 2,
    name: 'join challenges and registered devices',
    sql: `
-- Single-use challenges of join methods with a challenge round (x509). In the database, not in
-- memory, so several issuers on one database accept each other's challenges and a challenge
-- answered at one of them is used up for all.
CREATE TABLE join_challenges (
  id          TEXT    PRIMARY KEY,
  method      TEXT    NOT NULL,
  request_id  TEXT    NOT NULL,
  spki_hash   TEXT    NOT NULL,
  nonce       BLOB    NOT NULL,
  state       TEXT    NOT NULL CHECK (json_valid(state)),
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER
) STRICT;
CREATE INDEX join_challenges_expires ON join_challenges (expires_at);

-- Devices pre-registered from factory manifests (sigil ctl devices import).
CREATE TABLE devices (
  id                  INTEGER PRIMARY KEY,
  rule                TEXT,
  serial              TEXT    NOT NULL,
  ek_public_hash      TEXT,
  idevid_fingerprint  TEXT    NOT NULL UNIQUE CHECK (idevid_fingerprint GLOB 'sha256:*'),
  manifest            TEXT    NOT NULL CHECK (json_valid(manifest)),
  imported_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX devices_rule ON devices (rule, serial);
`,
  },
  {
    version: 3,
    name: 'cloud join key bindings and token replay cache',
    sql: `
-- First-join key bindings of join methods with static evidence (aws_iid: instance id -> the
-- agent's binding key). Reset by an administrator (sigil ctl bindings reset).
CREATE TABLE join_key_bindings (
  method      TEXT    NOT NULL,
  subject     TEXT    NOT NULL,
  key_hash    TEXT    NOT NULL CHECK (key_hash GLOB 'sha256:*'),
  rule        TEXT    NOT NULL,
  facts       TEXT    NOT NULL CHECK (json_valid(facts)),
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (method, subject)
) STRICT;

-- Signed tokens (OIDC/JWT) already used for a join, by issuer and jti, until they expire.
CREATE TABLE token_replay (
  issuer      TEXT    NOT NULL,
  jti         TEXT    NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER NOT NULL,
  PRIMARY KEY (issuer, jti)
) STRICT;
CREATE INDEX token_replay_expires ON token_replay (expires_at);
`,
  },
  {
    version: 4,
    name: 'idempotent answers bound to their signer',
    sql: `
-- Who signed the request a stored answer belongs to (server/ops/respond.ts): the signing key's
-- SPKI hash, with the instance id for requests signed by an identity. A replay is answered only
-- to the same signer (issue #11). Rows written before this migration keep '' and the payload
-- hash they were stored with; respond.ts matches those by payload hash plus the answer's
-- instance, until they age out (24 h).
ALTER TABLE idempotency ADD COLUMN signer TEXT NOT NULL DEFAULT '';
`,
  },
  {
    version: 5,
    name: 'audit retention anchors',
    sql: `
-- Audit retention (issue #11): pruning records the last removed row here, with the signed
-- checkpoint written before (server/audit/checkpoints.ts); verification starts after the newest
-- anchor. Append-only like audit_log.
CREATE TABLE audit_anchor (
  seq         INTEGER PRIMARY KEY,
  hash        TEXT    NOT NULL,
  at          INTEGER NOT NULL,
  pruned      INTEGER NOT NULL CHECK (pruned >= 0),
  checkpoint  TEXT    NOT NULL CHECK (json_valid(checkpoint))
) STRICT;
CREATE TRIGGER audit_anchor_no_update BEFORE UPDATE ON audit_anchor
  BEGIN SELECT RAISE(ABORT, 'audit_anchor is append-only'); END;
CREATE TRIGGER audit_anchor_no_delete BEFORE DELETE ON audit_anchor
  BEGIN SELECT RAISE(ABORT, 'audit_anchor is append-only'); END;
-- Rows at or below the newest anchor may go (a prune inserts the anchor, then deletes, in one
-- transaction); every other delete is still refused.
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  WHEN OLD.seq > (SELECT coalesce(max(seq), 0) FROM audit_anchor)
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
`,
  },
  {
    version: 6,
    name: 'workload registration resources',
    sql: `
-- Workload registration entries (kind 'workload', issue #17) are policy resources like roles and
-- bots. SQLite cannot alter a CHECK constraint, so the table is rebuilt with the wider one (same
-- columns, same rows; nothing references it, and it has no index or trigger besides its key).
CREATE TABLE resources_v6 (
  kind        TEXT    NOT NULL CHECK (kind IN ('role', 'bot', 'join_rule', 'workload')),
  name        TEXT    NOT NULL,
  spec        TEXT    NOT NULL CHECK (json_valid(spec)),  -- canonical JSON
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
) STRICT;
INSERT INTO resources_v6 (kind, name, spec, created_at, updated_at)
  SELECT kind, name, spec, created_at, updated_at FROM resources;
DROP TABLE resources;
ALTER TABLE resources_v6 RENAME TO resources;
`,
  },
  {
    version: 7,
    name: 'fleet view state columns and indexes',
    sql: `
-- The fleet view (issue #18) filters, sorts, pages and counts 100,000 instances in the database
-- (store/fleet-query.ts). An instance's state needs its current certificate's notBefore (renewal
-- overdue = past half-life) and whether its last attestation failed; both become plain columns,
-- written with the row (recordIssue, create/updateFacts), so a state is a comparison of columns,
-- not a join or a JSON parse per row. Plain rather than generated: migrate-store copies every
-- column to PostgreSQL, which has the same two.
ALTER TABLE instances ADD COLUMN current_not_before INTEGER;
ALTER TABLE instances ADD COLUMN attestation_ok INTEGER CHECK (attestation_ok IN (0, 1));
UPDATE instances SET current_not_before = (SELECT c.not_before FROM certificates c WHERE c.serial = instances.current_serial)
 WHERE current_serial IS NOT NULL;
UPDATE instances SET attestation_ok = CASE json_type(facts, '$.attestation.ok') WHEN 'true' THEN 1 WHEN 'false' THEN 0 END
 WHERE json_type(facts, '$.attestation.ok') IN ('true', 'false');
-- Indexes, chosen by bench/fleet-page.ts at 100,000 instances and kept few: every index holding a
-- column a renewal changes is written on every renewal. Static keys (bot, join method; the id,
-- the tiebreak, last) make their sort a walk of offset+limit entries. The state index covers
-- the four state columns (counts, state filters, the age histogram read it, not the table) and
-- orders by expiry. last_seen and generation sorts do without (a scan and a top-N sort, ~15 ms).
CREATE INDEX instances_fleet_bot ON instances (bot, id);
CREATE INDEX instances_fleet_method ON instances (join_method, id);
CREATE INDEX instances_fleet_state ON instances (current_not_after, id, current_not_before, locked, attestation_ok);
-- The rare states, as partial indexes (small, and only rows in the state are written to them).
CREATE INDEX instances_fleet_attestation_failed ON instances (id) WHERE attestation_ok = 0;
CREATE INDEX instances_fleet_locked ON instances (id) WHERE locked = 1;
-- A machine's audit history (the machine page), newest first, without walking the whole log.
CREATE INDEX audit_log_instance ON audit_log (instance_id, seq);
`,
  },
  {
    version: 8,
    name: 'issuer registry and cRLNumber counters',
    sql: `
-- One intermediate per issuer (issue #15; docs/issuers.md; store/issuer-registry-types.ts). The
-- certificate is a PEM an issuer verifies against its pinned root before trusting the row.
CREATE TABLE issuers (
  name        TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 32 AND name NOT GLOB '*[^a-z0-9-]*'),
  cert_pem    TEXT    NOT NULL,
  status      TEXT    NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
  reason      TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
) STRICT;
-- The last cRLNumber handed out per CRL issuer (RFC 5280 §5.2.3: monotonically increasing).
CREATE TABLE crl_numbers (
  crl_issuer  TEXT    PRIMARY KEY,
  n           INTEGER NOT NULL CHECK (n > 0)
) STRICT;
`,
  },
  {
    version: 9,
    name: 'audit chain linked by a trigger instead of two unique hash indexes',
    sql: `
-- Every renewal appends an audit row. UNIQUE prev_hash and UNIQUE hash were two indexes keyed by
-- random 64-character hex: each append wrote a leaf page at a random place in each of them, and
-- each such page is one more WAL frame in the group's COMMIT and in the next checkpoint (issue
-- #14: ~20 µs of the issuer's CPU per renewal at 100,000 rows, growing with the log). No query
-- looks a row up by either hash. What UNIQUE prev_hash guarded (the chain cannot fork) is kept,
-- stronger, by a trigger: a row is inserted only as the successor of the row (or prune anchor)
-- right before its seq, carrying that row's hash; seq is the primary key, so two rows can never
-- extend one predecessor. The trigger reads one row by primary key (a page the previous append
-- just wrote). SQLite cannot drop a column constraint, so the table is rebuilt: same columns, same
-- rows, same indexes and append-only triggers (DROP TABLE fires no trigger; the rows are copied
-- first). Run once, inside the migration transaction; a large log takes a few seconds.
CREATE TABLE audit_log_v9 (
  seq          INTEGER PRIMARY KEY,
  at           INTEGER NOT NULL,
  action       TEXT    NOT NULL,
  outcome      TEXT    NOT NULL,
  code         TEXT,
  bot          TEXT,
  instance_id  TEXT,
  method       TEXT,
  actor        TEXT    NOT NULL,
  remote       TEXT,
  details      TEXT    NOT NULL CHECK (json_valid(details)),  -- canonical JSON
  prev_hash    TEXT    NOT NULL,                              -- linked: trigger audit_log_linked
  hash         TEXT    NOT NULL
) STRICT;
INSERT INTO audit_log_v9 (seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash)
  SELECT seq, at, action, outcome, code, bot, instance_id, method, actor, remote, details, prev_hash, hash
    FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_v9 RENAME TO audit_log;
CREATE INDEX audit_log_at ON audit_log (at, seq);
CREATE INDEX audit_log_instance ON audit_log (instance_id, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
  WHEN OLD.seq > (SELECT coalesce(max(seq), 0) FROM audit_anchor)
  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
-- The predecessor of row seq: row seq-1, else the prune anchor at seq-1 (every row up to it was
-- pruned), else the genesis hash for row 1. None (a gap) refuses the row as well.
CREATE TRIGGER audit_log_linked BEFORE INSERT ON audit_log
  WHEN NEW.prev_hash IS NOT coalesce(
    (SELECT hash FROM audit_log WHERE seq = NEW.seq - 1),
    (SELECT hash FROM audit_anchor WHERE seq = NEW.seq - 1),
    CASE WHEN NEW.seq = 1 THEN '${'0'.repeat(64)}' END)
  BEGIN SELECT RAISE(ABORT, 'audit_log: a row must extend the chain (prev_hash = the hash of the row before its seq)'); END;
`,
  },
  {
    version: 10,
    name: 'fleet-view sessions',
    sql: `
-- Fleet-view sessions (docs/fleet-ui.md; store/ui-session-types.ts), in the database so that every
-- issuer on it knows them. Keyed by the SHA-256 of the cookie's id (the id itself is never stored);
-- seal: an HMAC keyed from audit.key over the identity columns (server/ui/session-seal.ts).
CREATE TABLE ui_sessions (
  id_hash       TEXT    PRIMARY KEY CHECK (length(id_hash) = 64),
  user_name     TEXT    NOT NULL,
  role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
  created_at    INTEGER NOT NULL,
  last_seen_at  INTEGER NOT NULL,
  remote        TEXT    NOT NULL,
  credential    TEXT    NOT NULL,
  seal          TEXT    NOT NULL
) STRICT;
CREATE INDEX ui_sessions_user ON ui_sessions (user_name, last_seen_at);
CREATE INDEX ui_sessions_seen ON ui_sessions (last_seen_at);
`,
  },
];

/** The newest schema version this code knows. */
export function latestVersion(migrations: readonly Migration[] = MIGRATIONS): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
}

/**
 * Bring `db` up to the newest schema. Idempotent: an up-to-date database is only read.
 * Refuses (SigilError 'internal') a database written by a newer Sigil, rather than guessing.
 * Returns the schema version after migrating.
 */
export function migrate(db: BetterSqlite3.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  checkOrdered(migrations);
  const latest = latestVersion(migrations);

  // Fast path without the write lock: many processes may open an up-to-date file at once.
  if (hasMigrationsTable(db) && checkedVersion(db, latest) === latest) return latest;

  return db
    .transaction(() => {
      db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL,
        applied_at  INTEGER NOT NULL
      ) STRICT`);
      // Re-read under the write lock: another process may have migrated meanwhile.
      const current = checkedVersion(db, latest);
      const record = db.prepare<[number, string, number]>(
        'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)',
      );
      for (const m of migrations) {
        if (m.version <= current) continue;
        db.exec(m.sql);
        record.run(m.version, m.name, Date.now());
      }
      return latest;
    })
    .immediate();
}

/** The database's schema version (0 when never migrated). */
export function schemaVersion(db: BetterSqlite3.Database): number {
  if (!hasMigrationsTable(db)) return 0;
  const v = db.prepare<[], number | null>('SELECT max(version) FROM schema_migrations').pluck().get();
  return v ?? 0;
}

function checkedVersion(db: BetterSqlite3.Database, latest: number): number {
  const current = schemaVersion(db);
  if (current > latest) {
    throw new SigilError(
      'store_schema_newer',
      `the database schema is version ${current}, newer than this Sigil knows (${latest}); ` +
        'run the Sigil version that wrote it, or a newer one',
    );
  }
  return current;
}

function hasMigrationsTable(db: BetterSqlite3.Database): boolean {
  return (
    db
      .prepare<[], number>("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'")
      .pluck()
      .get() === 1
  );
}

function checkOrdered(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new TypeError(`migration #${i} has version ${m.version}; versions must be 1, 2, 3, ... in order`);
    }
  });
}
