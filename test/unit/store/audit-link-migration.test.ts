/**
 * SQLite migration 9 (issue #14) on a database that already holds an audit chain: the table is
 * rebuilt without the two UNIQUE hash indexes and with the audit_log_linked trigger. The rows,
 * the chain, the prune anchor, the indexes the queries use and the append-only triggers survive;
 * appends continue the same chain; a forked or gapped row is still refused.
 */
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, migrate } from '../../../src/server/store/sqlite/migrations.js';
import { SqliteAuditStore } from '../../../src/server/store/sqlite/audit.js';
import { tempDir } from './helpers.js';

const T0 = 1_700_000_000_000;
const BEFORE = MIGRATIONS.filter((m) => m.version < 9);
const M9 = MIGRATIONS.find((m) => m.version === 9)!.sql;
const LINK_TRIGGER_SQL = M9.slice(M9.indexOf('CREATE TRIGGER audit_log_linked'));

function append(audit: SqliteAuditStore, n: number, from: number): void {
  for (let i = from; i < from + n; i++)
    audit.append({ action: 'renew', outcome: 'ok', bot: 'edge', instanceId: `i${i % 5}`, details: { n: i } }, T0 + i);
}

const names = (db: Database.Database, type: string): string[] =>
  (
    db
      .prepare("SELECT name FROM sqlite_schema WHERE type = ? AND tbl_name = 'audit_log' ORDER BY name")
      .all(type) as Array<{ name: string }>
  ).map((r) => r.name);

describe('SQLite migration 9: the audit chain linked by a trigger', () => {
  let t: ReturnType<typeof tempDir>;
  let db: Database.Database;
  beforeEach(() => {
    t = tempDir();
    db = new Database(t.dbPath);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    migrate(db, BEFORE);
  });
  afterEach(() => {
    db.close();
    t.remove();
  });

  it('keeps every row, the chain and its anchor; drops only the two hash indexes', () => {
    const key = { secret: Buffer.alloc(32, 7), fromSeq: 20, id: 'k1' };
    const old = new SqliteAuditStore(db, { key });
    append(old, 40, 1);
    expect(old.pruneThrough(10, JSON.stringify({ seq: 10 }), T0 + 100)).toBe(10);
    expect(names(db, 'index')).toEqual([
      'audit_log_at',
      'audit_log_instance',
      'sqlite_autoindex_audit_log_1',
      'sqlite_autoindex_audit_log_2',
    ]);
    const rowsBefore = db.prepare('SELECT * FROM audit_log ORDER BY seq').all();
    // Not migrated yet (`sigil doctor` opens without migrating): the link trigger is not expected.
    expect(old.triggers().missing).toEqual([]);

    expect(migrate(db)).toBe(MIGRATIONS.at(-1)!.version);

    expect(db.prepare('SELECT * FROM audit_log ORDER BY seq').all()).toEqual(rowsBefore);
    expect(names(db, 'index')).toEqual(['audit_log_at', 'audit_log_instance']);
    expect(names(db, 'trigger')).toEqual(['audit_log_linked', 'audit_log_no_delete', 'audit_log_no_update']);
    const audit = new SqliteAuditStore(db, { key });
    expect(audit.triggers().missing).toEqual([]);
    expect(audit.verify()).toEqual({ ok: true, rows: 30 });
    append(audit, 5, 41);
    expect(audit.verify()).toEqual({ ok: true, rows: 35 });
    // Still append-only, the prune window still honoured.
    expect(() => db.prepare('UPDATE audit_log SET outcome = ? WHERE seq = 20').run('refused')).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_log WHERE seq = 20').run()).toThrow(/append-only/);
    // Dropped by someone with write access to the file: reported (sigil doctor, audit --verify).
    db.exec('DROP TRIGGER audit_log_linked');
    expect(audit.triggers().missing).toEqual(['audit_log_linked']);
    db.exec(LINK_TRIGGER_SQL); // put back, as migration 9 made it
    // A row on the predecessor of the head (a fork) is refused.
    const forkOn = db.prepare('SELECT prev_hash FROM audit_log WHERE seq = 45').get() as { prev_hash: string };
    expect(() =>
      db
        .prepare(
          `INSERT INTO audit_log (seq, at, action, outcome, actor, details, prev_hash, hash)
           VALUES (46, 0, 'x', 'ok', 'system', '{}', ?, ?)`,
        )
        .run(forkOn.prev_hash, 'f'.repeat(64)),
    ).toThrow(/must extend the chain/);
  });

  it('links the first row after a prune of every row to the anchor, and row 1 to the genesis hash', () => {
    const old = new SqliteAuditStore(db);
    append(old, 3, 1);
    old.pruneThrough(3, JSON.stringify({ seq: 3 }), T0 + 100);
    migrate(db);
    const audit = new SqliteAuditStore(db);
    append(audit, 2, 4);
    expect(audit.verify()).toEqual({ ok: true, rows: 2 });

    const fresh = new Database(':memory:');
    try {
      migrate(fresh);
      const first = new SqliteAuditStore(fresh);
      append(first, 2, 1);
      expect(first.verify()).toEqual({ ok: true, rows: 2 });
    } finally {
      fresh.close();
    }
  });
});
