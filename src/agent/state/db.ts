/**
 * Opening `<data-dir>/agent.db` and bringing its schema up to date.
 *
 * Settings and why:
 * - WAL: the status CLI can read while the renewal loop writes.
 * - synchronous=FULL: an edge device may lose power at any moment. In WAL mode NORMAL can lose
 *   the last committed transactions on power loss; losing a just-saved identity would strand the
 *   agent with a key the issuer has already moved past (generation counters), so we pay the
 *   extra fsync per commit.
 * - busy_timeout=5000: a concurrent `sigil agent status` must not make the loop fail.
 * - mode 0600: the database holds software private keys (KeyRef). The file is created 0600
 *   *before* SQLite opens it; SQLite gives the -wal and -shm files the main file's mode.
 * - ownership: a data directory, agent.db, -wal or -shm that another user owns or can write is
 *   refused before SQLite opens anything (./dir-perms.ts): a planted database stays its
 *   planter's whatever mode we give it, and a swapped one can name a PKCS#11 module of theirs.
 * - Numbered migrations tracked in PRAGMA user_version, applied in one transaction.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { sqliteNativeBinding } from './native-binding.js';
import { SigilError } from '../../errors.js';
import { ensureDir } from '../../util/atomic-file.js';
import { assertStateDirSafe, assertStateFileSafe } from './dir-perms.js';

export type AgentDb = Database.Database;

export const AGENT_DB_FILE = 'agent.db';
const DB_MODE = 0o600;
const DATA_DIR_MODE = 0o700;

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Append only: a released migration is never edited, a fix is a new number. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      -- 'current' is what the agent serves; 'previous' is the identity it replaced, kept for
      -- diagnosis and as a fallback while a fresh credential is being distributed.
      CREATE TABLE identity (
        slot         TEXT PRIMARY KEY CHECK (slot IN ('current', 'previous')),
        instance_id  TEXT NOT NULL,
        spiffe_id    TEXT NOT NULL,
        bot          TEXT NOT NULL,
        chain_pem    TEXT NOT NULL,           -- JSON array, leaf first
        key_ref      TEXT NOT NULL,           -- JSON KeyRef
        key_storage  TEXT NOT NULL,
        exportable   INTEGER NOT NULL CHECK (exportable IN (0, 1)),
        serial       TEXT NOT NULL,
        not_before   INTEGER NOT NULL,
        not_after    INTEGER NOT NULL,
        generation   INTEGER NOT NULL,
        join_method  TEXT NOT NULL,
        issued_at    INTEGER NOT NULL,
        renew_after  INTEGER NOT NULL,
        saved_at     INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE trust_bundle (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        roots_pem   TEXT NOT NULL,            -- JSON array
        updated_at  INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE issuer_pin (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        pin        TEXT NOT NULL,             -- sha256:<spki hash>
        pinned_at  INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE outbox (
        request_id       TEXT PRIMARY KEY,
        op               TEXT NOT NULL,
        body             TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        pending_key_ref  TEXT
      ) STRICT;

      CREATE TABLE history (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       INTEGER NOT NULL,
        op       TEXT NOT NULL,
        outcome  TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
        code     TEXT,
        serial   TEXT,
        message  TEXT
      ) STRICT;
      CREATE INDEX history_outcome_at ON history (outcome, at);

      CREATE TABLE status (
        id                    INTEGER PRIMARY KEY CHECK (id = 1),
        consecutive_failures  INTEGER NOT NULL,
        last_error            TEXT,
        last_attempt_at       INTEGER,
        next_attempt_at       INTEGER,
        transport             TEXT
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: 'settings',
    sql: `
      -- Small durable facts that are not part of an identity, e.g. the MQTT bootstrap response id
      -- (a join resent after a crash must listen on the same topic to get its queued answer).
      CREATE TABLE settings (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    name: 'issuer key facts apart from the agent key facts',
    sql: `
      -- key_storage/exportable now say where the agent keeps its key and whether it can be read
      -- out, as the agent knows it (PKCS#11: read from the token); what the issuer recorded — it
      -- records only what it can verify — moves to issuer_*. Existing rows: the issuer's record
      -- is what key_storage/exportable held; the agent's view comes from the key reference.
      ALTER TABLE identity ADD COLUMN issuer_key_storage TEXT;
      ALTER TABLE identity ADD COLUMN issuer_exportable INTEGER CHECK (issuer_exportable IN (0, 1));
      UPDATE identity SET issuer_key_storage = key_storage, issuer_exportable = exportable;
      UPDATE identity
         SET key_storage = json_extract(key_ref, '$.storage'),
             exportable = (json_extract(key_ref, '$.storage') = 'software')
       WHERE json_valid(key_ref) AND json_extract(key_ref, '$.storage') IN ('software', 'tpm');
    `,
  },
  {
    version: 4,
    name: 'MQTT transport certificate',
    sql: `
      -- A hardware-bound identity key cannot be handed to the TLS stack, so such an agent asks
      -- for an MQTT transport certificate for a software key (agent/transport-cert.ts). The key
      -- (PKCS#8 PEM) is kept with the pending request — its answer certifies that key — and then
      -- with the identity, next to the certificate chain and its notAfter.
      ALTER TABLE outbox ADD COLUMN transport_key_pem TEXT;
      ALTER TABLE identity ADD COLUMN transport_key_pem TEXT;
      ALTER TABLE identity ADD COLUMN transport_chain_pem TEXT;   -- JSON array, leaf first
      ALTER TABLE identity ADD COLUMN transport_not_after INTEGER;
    `,
  },
  {
    version: 5,
    name: 'workload cache',
    sql: `
      -- The SPIFFE Workload API's offline cache (agent/workload/): what the issuer said applies
      -- to this node, one key + X.509-SVID per entry, prefetched JWT-SVIDs and the bundles, so a
      -- restarted agent serves workloads while the issuer is unreachable. Keys are PKCS#8 PEM
      -- (software keys: the Workload API hands them to the workload) in this 0600 database.
      -- IF NOT EXISTS: new tables only, so re-running it over a database whose user_version was
      -- set back (a downgrade and upgrade again, or the migration tests) changes nothing.
      CREATE TABLE IF NOT EXISTS workload_entry (
        id          TEXT PRIMARY KEY,
        entry       TEXT NOT NULL,            -- JSON WorkloadEntry
        synced_at   INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE IF NOT EXISTS workload_svid (
        entry_id     TEXT PRIMARY KEY,
        spiffe_id    TEXT NOT NULL,
        key_pem      TEXT NOT NULL,
        chain_pem    TEXT NOT NULL,           -- PEM, leaf first
        serial       TEXT NOT NULL,
        not_after    INTEGER NOT NULL,
        renew_after  INTEGER NOT NULL,
        saved_at     INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE IF NOT EXISTS workload_jwt (
        entry_id     TEXT NOT NULL,
        audience     TEXT NOT NULL,           -- JSON array, sorted
        spiffe_id    TEXT NOT NULL,
        token        TEXT NOT NULL,
        expires_at   INTEGER NOT NULL,
        renew_after  INTEGER NOT NULL,
        PRIMARY KEY (entry_id, audience)
      ) STRICT;

      CREATE TABLE IF NOT EXISTS workload_bundle (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        trust_domain  TEXT NOT NULL,
        roots_pem     TEXT NOT NULL,
        jwks          TEXT NOT NULL,
        updated_at    INTEGER NOT NULL
      ) STRICT;
    `,
  },
];

export const AGENT_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Open (creating if needed) the agent database in `dataDir` and migrate it. */
export function openAgentDb(dataDir: string): AgentDb {
  ensureDir(dataDir, DATA_DIR_MODE);
  const dir = assertStateDirSafe(dataDir);
  const file = path.join(dir, AGENT_DB_FILE);
  precreate(file);
  // SQLite opens the side files by name (following links) and keeps them: check ours, if any.
  for (const side of [`${file}-wal`, `${file}-shm`]) tightenExisting(side);

  let db: AgentDb;
  try {
    db = new Database(file, { timeout: 5000, ...sqliteNativeBinding() });
  } catch (err) {
    throw new SigilError('internal', `cannot open agent state ${file}`, { cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    migrate(db, file);
  } catch (err) {
    db.close();
    if (err instanceof SigilError) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new SigilError('config_invalid', `agent state ${file} is not a valid SQLite database`, { cause: err });
    }
    throw new SigilError('internal', `cannot initialise agent state ${file}`, { cause: err });
  }
  return db;
}

/**
 * Create the file 0600 ourselves (O_NOFOLLOW: never open a planted symlink), refuse an existing
 * one that another user owns or can write (./dir-perms.ts), and tighten the mode of one of ours,
 * so the key-bearing database is never world-readable, not even for the instant between
 * SQLite's create and a later chmod.
 */
function precreate(file: string): void {
  const st = lstatOrUndefined(file);
  // Judged before opening too, so a foreign file we may not open is refused by name, not EACCES.
  if (st) assertStateFileSafe(file, st);
  openChecked(file);
}

/**
 * An existing side file (-wal, -shm): refused like agent.db, tightened to 0600 if ours. Not
 * opened: closing a descriptor of ours would drop the POSIX locks another SQLite connection of
 * this process holds on it. chmod by name is safe here: the directory, checked just before, lets
 * nobody but us (or root) swap the entry.
 */
function tightenExisting(file: string): void {
  const st = lstatOrUndefined(file);
  if (!st) return;
  assertStateFileSafe(file, st);
  if ((st.mode & 0o777) === DB_MODE) return;
  try {
    fs.chmodSync(file, DB_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // SQLite removed it meanwhile
    throw new SigilError('internal', `cannot chmod agent state ${file}`, { cause: err });
  }
}

/** Open `file` without following links, judge what the descriptor is, and fchmod it 0600. */
function openChecked(file: string): void {
  const { O_CREAT, O_RDWR, O_NOFOLLOW } = fs.constants;
  let fd: number;
  try {
    fd = fs.openSync(file, O_CREAT | O_RDWR | O_NOFOLLOW, DB_MODE);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') {
      throw new SigilError('unsafe_path', `refusing to open ${file}: it is a symbolic link`, { cause: err });
    }
    throw new SigilError('internal', `cannot create agent state ${file}`, { cause: err });
  }
  try {
    // fstat, not the earlier lstat: the owner and mode of the inode we actually opened.
    assertStateFileSafe(file, fs.fstatSync(fd));
    fs.fchmodSync(fd, DB_MODE);
  } finally {
    fs.closeSync(fd);
  }
}

function lstatOrUndefined(file: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SigilError('internal', `cannot stat ${file}`, { cause: err });
  }
}

function migrate(db: AgentDb, file: string): void {
  // IMMEDIATE takes the write lock before reading the version, so two processes opening a new
  // database at once (agent + status CLI) do not both try to create the tables.
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current > AGENT_SCHEMA_VERSION) {
      // A downgrade would silently ignore tables it does not know; refuse instead.
      throw new SigilError(
        'config_invalid',
        `agent state ${file} has schema version ${current}, newer than this Sigil supports (${AGENT_SCHEMA_VERSION})`,
      );
    }
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      db.exec(m.sql);
      // user_version lives in the database header and commits with the transaction.
      db.pragma(`user_version = ${m.version}`);
    }
  }).immediate();
}
