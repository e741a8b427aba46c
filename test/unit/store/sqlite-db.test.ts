import fs from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import { openSqlite, sqliteDurability, switchToWal } from '../../../src/server/store/sqlite/db.js';
import { openSyncSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { MIGRATIONS, latestVersion, migrate, schemaVersion } from '../../../src/server/store/sqlite/migrations.js';
import { tempDir } from './helpers.js';

describe('sqlite database file', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir();
  });
  afterEach(() => t.remove());

  it('retries the switch to WAL that SQLite refuses at once to a racing process (no busy handler on deadlock)', () => {
    // Two processes opening one fresh file both want the EXCLUSIVE lock; SQLite answers
    // SQLITE_BUSY immediately to one of them. That process must try again, not fail to start.
    const calls: string[] = [];
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    const db = {
      pragma: (p: string) => {
        calls.push(p);
        if (calls.length <= 2) throw busy;
        return 'wal';
      },
    } as unknown as Pick<Database.Database, 'pragma'>;
    switchToWal(db);
    expect(calls).toEqual(['journal_mode = WAL', 'journal_mode = WAL', 'journal_mode = WAL']);
  });

  it('gives up on the WAL switch at its deadline and on errors other than busy', () => {
    const busy = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    const always = {
      pragma: () => {
        throw busy;
      },
    } as unknown as Pick<Database.Database, 'pragma'>;
    expect(() => switchToWal(always, 30)).toThrow('database is locked');
    let n = 0;
    const io = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
    const other = {
      pragma: () => {
        n++;
        throw io;
      },
    } as unknown as Pick<Database.Database, 'pragma'>;
    expect(() => switchToWal(other)).toThrow('disk I/O error');
    expect(n).toBe(1);
  });

  it('sets WAL, busy_timeout, foreign_keys and synchronous=FULL (every commit survives a power loss)', () => {
    const db = openSqlite(t.dbPath);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // 2 = FULL
    } finally {
      db.close();
    }
  });

  it('SIGIL_SQLITE_SYNCHRONOUS: flush by default, full or normal by choice, anything else refused', () => {
    expect(sqliteDurability({})).toBe('flush');
    expect(sqliteDurability({ SIGIL_SQLITE_SYNCHRONOUS: 'Full' })).toBe('full');
    expect(sqliteDurability({ SIGIL_SQLITE_SYNCHRONOUS: 'normal' })).toBe('normal');
    expect(() => sqliteDurability({ SIGIL_SQLITE_SYNCHRONOUS: 'off' })).toThrow(
      expect.objectContaining({
        code: 'config_invalid',
        message: expect.stringMatching(/must be flush .*, full or normal/),
      }),
    );
    const old = process.env['SIGIL_SQLITE_SYNCHRONOUS'];
    process.env['SIGIL_SQLITE_SYNCHRONOUS'] = 'normal';
    try {
      const db = openSqlite(t.dbPath);
      expect(db.pragma('synchronous', { simple: true })).toBe(1);
      db.close();
    } finally {
      if (old === undefined) delete process.env['SIGIL_SQLITE_SYNCHRONOUS'];
      else process.env['SIGIL_SQLITE_SYNCHRONOUS'] = old;
    }
  });

  it('makes the database and its WAL files owner-only, even under a loose umask', () => {
    const old = process.umask(0o022);
    try {
      const stores = openSyncSqliteStores(t.dbPath);
      stores.audit.append({ action: 'x', outcome: 'ok' }, 1);
      for (const p of [t.dbPath, `${t.dbPath}-wal`, `${t.dbPath}-shm`]) {
        expect(fs.existsSync(p)).toBe(true);
        expect(fs.statSync(p).mode & 0o777).toBe(0o600);
      }
      stores.close();
      // An existing file with loose permissions is tightened on open.
      fs.chmodSync(t.dbPath, 0o644);
      openSyncSqliteStores(t.dbPath).close();
      expect(fs.statSync(t.dbPath).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });

  it('migrates once; reopening keeps data and applies nothing twice', () => {
    const a = openSyncSqliteStores(t.dbPath);
    a.admin.setAdminTokenHash('aa');
    a.close();
    const b = openSyncSqliteStores(t.dbPath);
    expect(b.admin.getAdminTokenHash()).toBe('aa');
    b.close();
    const raw = new Database(t.dbPath);
    try {
      const rows = raw.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
      expect(rows).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
      expect(schemaVersion(raw)).toBe(latestVersion());
      expect(migrate(raw)).toBe(latestVersion());
      expect(raw.prepare('SELECT count(*) AS n FROM schema_migrations').get()).toEqual({ n: MIGRATIONS.length });
    } finally {
      raw.close();
    }
  });

  it('applies only pending migrations, in one transaction', () => {
    const raw = new Database(t.dbPath);
    try {
      const extra = [
        ...MIGRATIONS,
        { version: MIGRATIONS.length + 1, name: 'extra', sql: 'CREATE TABLE extra (x INTEGER) STRICT;' },
      ];
      expect(migrate(raw)).toBe(MIGRATIONS.length);
      expect(migrate(raw, extra)).toBe(extra.length);
      expect(schemaVersion(raw)).toBe(extra.length);
      // A failing migration changes nothing.
      const broken = [
        ...extra,
        {
          version: extra.length + 1,
          name: 'broken',
          sql: 'CREATE TABLE ok2 (x INTEGER); SELECT * FROM no_such_table;',
        },
      ];
      expect(() => migrate(raw, broken)).toThrow(/no_such_table/);
      expect(schemaVersion(raw)).toBe(extra.length);
      expect(raw.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'ok2'").get()).toEqual({ n: 0 });
      // Versions must be 1..n in order.
      expect(() => migrate(raw, [MIGRATIONS[0]!, { version: 3, name: 'skip', sql: '' }])).toThrow(TypeError);
    } finally {
      raw.close();
    }
  });

  it('refuses a database from a newer Sigil with a clear error', () => {
    openSyncSqliteStores(t.dbPath).close();
    const raw = new Database(t.dbPath);
    raw
      .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
      .run(latestVersion() + 1, 'future', 0);
    raw.close();
    let err: unknown;
    try {
      openSyncSqliteStores(t.dbPath);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SigilError);
    // Not retryable: waiting never heals a downgrade (the CLI exits 2; the server unit does not restart on 2).
    expect((err as SigilError).code).toBe('store_schema_newer');
    expect((err as SigilError).retryable).toBe(false);
    expect((err as SigilError).message).toMatch(
      new RegExp(`version ${latestVersion() + 1}, newer than this Sigil knows \\(${latestVersion()}\\)`),
    );
  });

  it('keeps the audit log append-only against stray UPDATE and DELETE', () => {
    const s = openSyncSqliteStores(t.dbPath);
    s.audit.append({ action: 'x', outcome: 'ok' }, 1);
    s.close();
    const raw = new Database(t.dbPath);
    try {
      expect(() => raw.prepare("UPDATE audit_log SET outcome = 'refused'").run()).toThrow(/append-only/);
      expect(() => raw.prepare('DELETE FROM audit_log').run()).toThrow(/append-only/);
    } finally {
      raw.close();
    }
  });

  it('runs nested transactions as savepoints (better-sqlite3 behaviour we rely on)', () => {
    const db = openSqlite(t.dbPath);
    try {
      const seen: boolean[] = [];
      const outer = db.transaction(() => {
        seen.push(db.inTransaction);
        db.transaction(() => seen.push(db.inTransaction)).immediate();
        seen.push(db.inTransaction);
      });
      outer.immediate();
      expect(seen).toEqual([true, true, true]);
      expect(db.inTransaction).toBe(false);
    } finally {
      db.close();
    }
  });
});
