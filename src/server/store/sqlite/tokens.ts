/** One-time join tokens, stored by hash. Single use holds across processes sharing the file. */
import type BetterSqlite3 from 'better-sqlite3';
import type { ConsumeResult, JoinTokenRecord } from '../types.js';
import type { SyncTokenStore } from './sync-types.js';

interface TokenRow {
  hash: string;
  bot: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
}

const COLS = 'hash, bot, created_at, expires_at, used_at, used_by';

export class SqliteTokenStore implements SyncTokenStore {
  private readonly insertStmt: BetterSqlite3.Statement<[string, string, number, number]>;
  private readonly consumeStmt: BetterSqlite3.Statement<[number, string, string, number], TokenRow>;
  private readonly getStmt: BetterSqlite3.Statement<[string], TokenRow>;
  private readonly listStmt: BetterSqlite3.Statement<[], TokenRow>;
  private readonly pruneStmt: BetterSqlite3.Statement<[number, number]>;

  constructor(db: BetterSqlite3.Database) {
    this.insertStmt = db.prepare('INSERT INTO join_tokens (hash, bot, created_at, expires_at) VALUES (?, ?, ?, ?)');
    // The whole decision is this one statement: SQLite runs it under the database write lock,
    // so of any number of connections (in any number of processes) exactly one sees used_at
    // still NULL. RETURNING hands back the row without a second read.
    this.consumeStmt = db.prepare(
      `UPDATE join_tokens SET used_at = ?, used_by = ?
        WHERE hash = ? AND used_at IS NULL AND expires_at > ?
        RETURNING ${COLS}`,
    );
    this.getStmt = db.prepare(`SELECT ${COLS} FROM join_tokens WHERE hash = ?`);
    this.listStmt = db.prepare(`SELECT ${COLS} FROM join_tokens ORDER BY created_at, hash`);
    this.pruneStmt = db.prepare(
      'DELETE FROM join_tokens WHERE expires_at < ? OR (used_at IS NOT NULL AND used_at < ?)',
    );
  }

  create(rec: { hash: string; bot: string; createdAt: number; expiresAt: number }): void {
    this.insertStmt.run(rec.hash, rec.bot, rec.createdAt, rec.expiresAt);
  }

  consume(hash: string, now: number, usedBy: string): ConsumeResult {
    const row = this.consumeStmt.get(now, usedBy, hash, now);
    if (row) return { ok: true, token: toRecord(row) };
    // Not consumed: say why. (A concurrent consumer may have won in between; "reused" is then
    // exactly right.) Reuse wins over expiry: a used token is the more important signal.
    const existing = this.getStmt.get(hash);
    if (!existing) return { ok: false, reason: 'token_invalid' };
    if (existing.used_at !== null) return { ok: false, reason: 'token_reused' };
    return { ok: false, reason: 'token_expired' };
  }

  /**
   * Look a token up without consuming it (to name the bot and refuse early). Not part of
   * `SyncTokenStore` yet; the single-use decision is still `consume`.
   */
  get(hash: string): JoinTokenRecord | undefined {
    const row = this.getStmt.get(hash);
    return row && toRecord(row);
  }

  list(): JoinTokenRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  /** Deletes tokens that expired before `before` and tokens used before `before`. */
  prune(before: number): number {
    return this.pruneStmt.run(before, before).changes;
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
