/** One-time join tokens on PostgreSQL (types.ts TokenStore). Single use holds across issuers. */
import type { ConsumeResult, JoinTokenRecord, TokenStore } from '../types.js';
import type { Db } from './db.js';

interface TokenRow {
  hash: string;
  bot: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
}

export class PgTokenStore implements TokenStore {
  constructor(private readonly db: Db) {}

  async create(rec: { hash: string; bot: string; createdAt: number; expiresAt: number }): Promise<void> {
    await this.db.sql`
      INSERT INTO join_tokens (hash, bot, created_at, expires_at) VALUES (${rec.hash}, ${rec.bot}, ${rec.createdAt}, ${rec.expiresAt})`;
  }

  async get(hash: string): Promise<JoinTokenRecord | undefined> {
    const [row] = await this.db.sql<TokenRow[]>`
      SELECT hash, bot, created_at, expires_at, used_at, used_by FROM join_tokens WHERE hash = ${hash}`;
    return row && toRecord(row);
  }

  /**
   * The whole decision is one conditional UPDATE. Of N issuers running it at once, the first
   * takes the row lock; the others wait for it, and when it commits PostgreSQL re-checks their
   * WHERE against the new row version (READ COMMITTED's re-evaluation), finds used_at set and
   * updates nothing: exactly one winner, in any number of processes.
   */
  async consume(hash: string, now: number, usedBy: string): Promise<ConsumeResult> {
    const sql = this.db.sql;
    const [row] = await sql<TokenRow[]>`
      UPDATE join_tokens SET used_at = ${now}, used_by = ${usedBy}
       WHERE hash = ${hash} AND used_at IS NULL AND expires_at > ${now}
      RETURNING hash, bot, created_at, expires_at, used_at, used_by`;
    if (row) return { ok: true, token: toRecord(row) };
    // Not consumed: say why. Reuse wins over expiry (a used token is the more important signal).
    const [existing] = await sql<{ used_at: number | null }[]>`SELECT used_at FROM join_tokens WHERE hash = ${hash}`;
    if (!existing) return { ok: false, reason: 'token_invalid' };
    if (existing.used_at !== null) return { ok: false, reason: 'token_reused' };
    return { ok: false, reason: 'token_expired' };
  }

  async list(): Promise<JoinTokenRecord[]> {
    const rows = await this.db.sql<TokenRow[]>`
      SELECT hash, bot, created_at, expires_at, used_at, used_by FROM join_tokens ORDER BY created_at, hash COLLATE "C"`;
    return rows.map(toRecord);
  }

  async prune(before: number): Promise<number> {
    const r = await this.db.sql`
      DELETE FROM join_tokens WHERE expires_at < ${before} OR (used_at IS NOT NULL AND used_at < ${before})`;
    return r.count;
  }
}

function toRecord(row: TokenRow): JoinTokenRecord {
  return {
    hash: row.hash,
    bot: row.bot,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    usedBy: row.used_by,
  };
}
