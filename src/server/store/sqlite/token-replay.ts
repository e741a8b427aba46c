/** The jti replay cache of token join methods (types.ts TokenReplayStore). */
import type BetterSqlite3 from 'better-sqlite3';
import type { SyncTokenReplayStore } from './sync-types.js';

export class SqliteTokenReplayStore implements SyncTokenReplayStore {
  private readonly seenStmt: BetterSqlite3.Statement<[string, string], number>;
  private readonly recordStmt: BetterSqlite3.Statement<[string, string, number, number]>;
  private readonly pruneStmt: BetterSqlite3.Statement<[number]>;

  constructor(db: BetterSqlite3.Database) {
    this.seenStmt = db
      .prepare<[string, string], number>('SELECT 1 FROM token_replay WHERE issuer = ? AND jti = ?')
      .pluck();
    // One conditional INSERT decides, under the database write lock: of N concurrent joins with
    // one token, in any number of processes, exactly one records it.
    this.recordStmt = db.prepare(
      'INSERT INTO token_replay (issuer, jti, expires_at, used_at) VALUES (?, ?, ?, ?) ON CONFLICT (issuer, jti) DO NOTHING',
    );
    this.pruneStmt = db.prepare('DELETE FROM token_replay WHERE expires_at < ?');
  }

  seen(issuer: string, jti: string): boolean {
    return this.seenStmt.get(issuer, jti) !== undefined;
  }

  record(issuer: string, jti: string, expiresAt: number, now: number): boolean {
    return this.recordStmt.run(issuer, jti, expiresAt, now).changes === 1;
  }

  prune(before: number): number {
    return this.pruneStmt.run(before).changes;
  }
}
