/** The jti replay cache of token join methods on PostgreSQL (types.ts TokenReplayStore). */
import type { TokenReplayStore } from '../types.js';
import type { Db } from './db.js';

export class PgTokenReplayStore implements TokenReplayStore {
  constructor(private readonly db: Db) {}

  async seen(issuer: string, jti: string): Promise<boolean> {
    return (await this.db.sql`SELECT 1 FROM token_replay WHERE issuer = ${issuer} AND jti = ${jti}`).length > 0;
  }

  /** One conditional INSERT decides: of N concurrent joins with one token, on any issuers, exactly one records it. */
  async record(issuer: string, jti: string, expiresAt: number, now: number): Promise<boolean> {
    const r = await this.db.sql`
      INSERT INTO token_replay (issuer, jti, expires_at, used_at) VALUES (${issuer}, ${jti}, ${expiresAt}, ${now})
      ON CONFLICT (issuer, jti) DO NOTHING`;
    return r.count === 1;
  }

  async prune(before: number): Promise<number> {
    return (await this.db.sql`DELETE FROM token_replay WHERE expires_at < ${before}`).count;
  }
}
