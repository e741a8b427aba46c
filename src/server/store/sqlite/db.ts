/**
 * Opening the issuer's SQLite file: connection pragmas, owner-only file permissions,
 * migrations. The caller makes sure the directory exists (and is itself private).
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { SigilError } from '../../../errors.js';
import { migrate } from './migrations.js';

/** The db file and its WAL/shared-memory companions hold token hashes and the audit log. */
const FILE_MODE = 0o600;

/**
 * How the issuer's SQLite commits reach the disk (`SIGIL_SQLITE_SYNCHRONOUS`):
 * - `flush` (the default): the issuer's writer runs synchronous=NORMAL and its async store flushes
 *   the WAL with fdatasync(2) off the event loop, answering a transaction only once its COMMIT is on
 *   disk (./wal-sync.ts); `sigil ctl` opens the same store. Other connections (migrations, doctor's,
 *   the synchronous stores) run FULL.
 * - `full`: synchronous=FULL everywhere: the same guarantee, the fsync inside COMMIT on the event
 *   loop (measured: p99 latency near saturation ~1.5× worse, docs/performance.md "Session 18").
 * - `normal`: synchronous=NORMAL and no flush, as Sigil ran before: nothing is lost when the
 *   *process* crashes and the file is never corrupted, but a power loss or kernel crash rolls back
 *   the commits since the last checkpoint's sync — agents that renewed then hold a certificate the
 *   issuer no longer knows (`chain_invalid`, a re-join: runbook "Restore"), a spent join token is
 *   unused again. For a disk that acknowledges flushes it has not made anyway.
 */
export type SqliteDurability = 'flush' | 'full' | 'normal';

export function sqliteDurability(env: NodeJS.ProcessEnv = process.env): SqliteDurability {
  const v = (env['SIGIL_SQLITE_SYNCHRONOUS'] ?? '').toLowerCase();
  if (v === '' || v === 'flush') return 'flush';
  if (v === 'full' || v === 'normal') return v;
  throw new SigilError(
    'config_invalid',
    `SIGIL_SQLITE_SYNCHRONOUS must be flush (the default), full or normal (normal: a power loss may roll back the latest commits; got "${env['SIGIL_SQLITE_SYNCHRONOUS']}")`,
  );
}

export function openSqlite(path: string): Database.Database {
  const inMemory = path === ':memory:' || path === '';
  // Create the file owner-only before SQLite does, so it is never briefly world-readable
  // under a loose umask. Flag 'a' never truncates an existing database.
  if (!inMemory) fs.closeSync(fs.openSync(path, 'a', FILE_MODE));

  const db = new Database(path);
  try {
    // First, so the pragmas and migrations below wait for other processes instead of failing
    // with SQLITE_BUSY (switching to WAL needs a moment of exclusive access).
    db.pragma('busy_timeout = 5000');
    // WAL: readers never block the writer and vice versa; writers from several processes
    // serialise on the WAL write lock (BEGIN IMMEDIATE in SyncStores.tx and withWriteTx).
    switchToWal(db);
    // FULL here (also for `flush`: the issuer's async store lowers its own writer to NORMAL and
    // flushes the WAL itself; see sqliteDurability).
    db.pragma(`synchronous = ${sqliteDurability() === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('foreign_keys = ON');
    migrate(db);
    if (!inMemory) restrictPermissions(path);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A read-only connection to an existing, migrated database, for reads outside a write
 * transaction (./async.ts). In WAL mode each statement reads the last committed snapshot, so it
 * never sees a transaction still open on the writer connection, and never waits for it.
 */
export function openSqliteReader(path: string): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    // A reader waits only while another process switches the journal mode or checkpoints
    // with TRUNCATE; the same patience as the writer.
    db.pragma('busy_timeout = 5000');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * `PRAGMA journal_mode = WAL`, retried while another process is switching the same new file.
 * The busy timeout does not cover this case: two connections that both hold a SHARED lock on a
 * fresh rollback-journal file and both want the EXCLUSIVE lock the switch needs would deadlock,
 * so SQLite answers SQLITE_BUSY at once to one of them instead of calling its busy handler
 * (sqlite.org/c3ref/busy_handler.html: "If SQLite determines that invoking the busy handler could
 * result in a deadlock, it will go ahead and return SQLITE_BUSY"). The loser has released its
 * lock by then, so trying again after the winner's switch succeeds (WAL is then already set).
 */
export function switchToWal(db: Pick<Database.Database, 'pragma'>, deadlineMs = 5_000): void {
  const until = Date.now() + deadlineMs;
  for (let attempt = 0; ; attempt++) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || Date.now() >= until) throw err;
      // Synchronous: opening the store is synchronous; a few ms, bounded by the deadline.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(5 * (attempt + 1), 50));
    }
  }
}

/** chmod 0600 the database and whichever of its -wal / -shm files exist right now. */
function restrictPermissions(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      fs.chmodSync(p, FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || p === path) throw err;
    }
  }
}
