/** Join challenges on PostgreSQL (types.ts ChallengeStore): single use across issuers, as tokens. */
import type { ChallengeConsumeResult, ChallengeRecord, ChallengeStore } from '../types.js';
import { canonicalJson } from '../sqlite/canonical-json.js';
import type { Db } from './db.js';

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

export class PgChallengeStore implements ChallengeStore {
  constructor(private readonly db: Db) {}

  async create(rec: Omit<ChallengeRecord, 'usedAt'>): Promise<void> {
    await this.db.sql`
      INSERT INTO join_challenges (id, method, request_id, spki_hash, nonce, state, created_at, expires_at)
      VALUES (${rec.id}, ${rec.method}, ${rec.requestId}, ${rec.spkiHash}, ${rec.nonce}, ${canonicalJson(rec.state)},
              ${rec.createdAt}, ${rec.expiresAt})`;
  }

  async get(id: string): Promise<ChallengeRecord | undefined> {
    const [row] = await this.db.sql<ChallengeRow[]>`
      SELECT id, method, request_id, spki_hash, nonce, state, created_at, expires_at, used_at
        FROM join_challenges WHERE id = ${id}`;
    return row && toRecord(row);
  }

  /** One conditional UPDATE, as `PgTokenStore.consume`. */
  async consume(id: string, now: number): Promise<ChallengeConsumeResult> {
    const sql = this.db.sql;
    const won = await sql`
      UPDATE join_challenges SET used_at = ${now} WHERE id = ${id} AND used_at IS NULL AND expires_at > ${now}`;
    if (won.count === 1) return { ok: true };
    const [row] = await sql<{ used_at: number | null }[]>`SELECT used_at FROM join_challenges WHERE id = ${id}`;
    if (!row) return { ok: false, reason: 'challenge_invalid' };
    if (row.used_at !== null) return { ok: false, reason: 'challenge_reused' };
    return { ok: false, reason: 'challenge_expired' };
  }

  async prune(before: number): Promise<number> {
    return (await this.db.sql`DELETE FROM join_challenges WHERE expires_at < ${before}`).count;
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
