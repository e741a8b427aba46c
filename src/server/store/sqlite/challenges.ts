/** Join challenges (join/challenge.ts). Single use holds across processes sharing the file. */
import type BetterSqlite3 from 'better-sqlite3';
import type { ChallengeConsumeResult, ChallengeRecord } from '../types.js';
import type { SyncChallengeStore } from './sync-types.js';
import { canonicalJson } from './canonical-json.js';

interface ChallengeRow {
  id: string;
  method: string;
  request_id: string;
  spki_hash: string;
  nonce: Buffer;
  state: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

const COLS = 'id, method, request_id, spki_hash, nonce, state, created_at, expires_at, used_at';

export class SqliteChallengeStore implements SyncChallengeStore {
  private readonly insertStmt: BetterSqlite3.Statement<
    [string, string, string, string, Buffer, string, number, number]
  >;
  private readonly getStmt: BetterSqlite3.Statement<[string], ChallengeRow>;
  private readonly consumeStmt: BetterSqlite3.Statement<[number, string, number], { id: string }>;
  private readonly pruneStmt: BetterSqlite3.Statement<[number]>;

  constructor(db: BetterSqlite3.Database) {
    this.insertStmt = db.prepare(`INSERT INTO join_challenges (${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)`);
    this.getStmt = db.prepare(`SELECT ${COLS} FROM join_challenges WHERE id = ?`);
    // As with join tokens, the whole single-use decision is this one statement under the
    // database write lock.
    this.consumeStmt = db.prepare(
      'UPDATE join_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ? RETURNING id',
    );
    this.pruneStmt = db.prepare('DELETE FROM join_challenges WHERE expires_at < ?');
  }

  create(rec: Omit<ChallengeRecord, 'usedAt'>): void {
    this.insertStmt.run(
      rec.id,
      rec.method,
      rec.requestId,
      rec.spkiHash,
      rec.nonce,
      canonicalJson(rec.state),
      rec.createdAt,
      rec.expiresAt,
    );
  }

  get(id: string): ChallengeRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  consume(id: string, now: number): ChallengeConsumeResult {
    if (this.consumeStmt.get(now, id, now)) return { ok: true };
    // Not consumed: say why. Reuse wins over expiry, as for tokens.
    const row = this.getStmt.get(id);
    if (!row) return { ok: false, reason: 'challenge_invalid' };
    if (row.used_at !== null) return { ok: false, reason: 'challenge_reused' };
    return { ok: false, reason: 'challenge_expired' };
  }

  prune(before: number): number {
    return this.pruneStmt.run(before).changes;
  }
}

function toRecord(row: ChallengeRow): ChallengeRecord {
  return {
    id: row.id,
    method: row.method,
    requestId: row.request_id,
    spkiHash: row.spki_hash,
    nonce: Buffer.from(row.nonce),
    state: JSON.parse(row.state) as Record<string, unknown>,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
  };
}
