/** First-join key bindings on PostgreSQL (types.ts KeyBindingStore). */
import type { KeyBindingRecord, KeyBindingStore } from '../types.js';
import { canonicalJson } from '../sqlite/canonical-json.js';
import type { Db } from './db.js';

interface BindingRow {
  method: string;
  subject: string;
  key_hash: string;
  rule: string;
  facts: string;
  created_at: number;
}

export class PgKeyBindingStore implements KeyBindingStore {
  constructor(private readonly db: Db) {}

  async get(method: string, subject: string): Promise<KeyBindingRecord | undefined> {
    const [row] = await this.db.sql<BindingRow[]>`
      SELECT method, subject, key_hash, rule, facts, created_at
        FROM join_key_bindings WHERE method = ${method} AND subject = ${subject}`;
    return row && toRecord(row);
  }

  /**
   * The single-winner step is the INSERT … ON CONFLICT DO NOTHING. When it loses, the binding in
   * force is read by a SECOND statement: under READ COMMITTED that one sees a winner that
   * committed after the INSERT's snapshot was taken (one statement could not).
   */
  async bind(rec: KeyBindingRecord): Promise<KeyBindingRecord> {
    const sql = this.db.sql;
    const [row] = await sql<BindingRow[]>`
      INSERT INTO join_key_bindings (method, subject, key_hash, rule, facts, created_at)
      VALUES (${rec.method}, ${rec.subject}, ${rec.keyHash}, ${rec.rule}, ${canonicalJson(rec.facts)}, ${rec.createdAt})
      ON CONFLICT (method, subject) DO NOTHING
      RETURNING method, subject, key_hash, rule, facts, created_at`;
    if (row) return toRecord(row);
    return (await this.get(rec.method, rec.subject))!;
  }

  async reset(method: string, subject: string): Promise<boolean> {
    return (
      (await this.db.sql`DELETE FROM join_key_bindings WHERE method = ${method} AND subject = ${subject}`).count > 0
    );
  }

  async list(filter?: { method?: string }): Promise<KeyBindingRecord[]> {
    const sql = this.db.sql;
    const rows =
      filter?.method !== undefined
        ? await sql<BindingRow[]>`
            SELECT method, subject, key_hash, rule, facts, created_at FROM join_key_bindings
             WHERE method = ${filter.method} ORDER BY subject COLLATE "C"`
        : await sql<BindingRow[]>`
            SELECT method, subject, key_hash, rule, facts, created_at FROM join_key_bindings
             ORDER BY method COLLATE "C", subject COLLATE "C"`;
    return rows.map(toRecord);
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
