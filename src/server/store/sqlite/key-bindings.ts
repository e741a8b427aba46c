/** First-join key bindings (types.ts KeyBindingStore), e.g. an EC2 instance id to the agent's binding key. */
import type BetterSqlite3 from 'better-sqlite3';
import type { KeyBindingRecord } from '../types.js';
import type { SyncKeyBindingStore } from './sync-types.js';
import { canonicalJson } from './canonical-json.js';

interface BindingRow {
  method: string;
  subject: string;
  key_hash: string;
  rule: string;
  facts: string;
  created_at: number;
}

const COLS = 'method, subject, key_hash, rule, facts, created_at';

export class SqliteKeyBindingStore implements SyncKeyBindingStore {
  private readonly getStmt: BetterSqlite3.Statement<[string, string], BindingRow>;
  private readonly insertStmt: BetterSqlite3.Statement<[string, string, string, string, string, number]>;
  private readonly deleteStmt: BetterSqlite3.Statement<[string, string]>;
  private readonly listStmt: BetterSqlite3.Statement<[], BindingRow>;
  private readonly listMethodStmt: BetterSqlite3.Statement<[string], BindingRow>;

  constructor(db: BetterSqlite3.Database) {
    this.getStmt = db.prepare(`SELECT ${COLS} FROM join_key_bindings WHERE method = ? AND subject = ?`);
    // The single-winner step: of concurrent first joins (in any number of processes), one inserts.
    this.insertStmt = db.prepare(
      `INSERT INTO join_key_bindings (${COLS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (method, subject) DO NOTHING`,
    );
    this.deleteStmt = db.prepare('DELETE FROM join_key_bindings WHERE method = ? AND subject = ?');
    this.listStmt = db.prepare(`SELECT ${COLS} FROM join_key_bindings ORDER BY method, subject`);
    this.listMethodStmt = db.prepare(`SELECT ${COLS} FROM join_key_bindings WHERE method = ? ORDER BY subject`);
  }

  get(method: string, subject: string): KeyBindingRecord | undefined {
    const row = this.getStmt.get(method, subject);
    return row && toRecord(row);
  }

  bind(rec: KeyBindingRecord): KeyBindingRecord {
    this.insertStmt.run(rec.method, rec.subject, rec.keyHash, rec.rule, canonicalJson(rec.facts), rec.createdAt);
    return toRecord(this.getStmt.get(rec.method, rec.subject)!);
  }

  reset(method: string, subject: string): boolean {
    return this.deleteStmt.run(method, subject).changes > 0;
  }

  list(filter?: { method?: string }): KeyBindingRecord[] {
    return (filter?.method !== undefined ? this.listMethodStmt.all(filter.method) : this.listStmt.all()).map(toRecord);
  }
}

function toRecord(row: BindingRow): KeyBindingRecord {
  return {
    method: row.method,
    subject: row.subject,
    keyHash: row.key_hash,
    rule: row.rule,
    facts: JSON.parse(row.facts) as Record<string, unknown>,
    createdAt: row.created_at,
  };
}
