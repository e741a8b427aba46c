/**
 * Opening the issuer's SQLite file: connection pragmas, owner-only file permissions,
 * migrations. The caller makes sure the directory exists (and is itself private).
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { migrate } from './migrations.js';

/** The db file and its WAL/shared-memory companions hold token hashes and the audit log. */
const FILE_MODE = 0o600;

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
    // In WAL mode, synchronous=NORMAL fsyncs only at checkpoints, not at every commit. Every
    // commit is still atomic and the file can never be corrupted, and nothing is lost when the
    // *process* crashes (the WAL is in the OS page cache). What a power loss or kernel crash
    // can do is roll back the last few commits since the previous checkpoint: the file stays
    // consistent, a just-consumed join token could become unused again (it still expires by its
    // short TTL) and the audit chain loses its newest rows (it stays valid, just shorter).
    // FULL would fsync the WAL on each commit and cost a disk flush per issued certificate.
    db.pragma('synchronous = NORMAL');
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
