/** The admin bearer token's hash, kept in the key/value `settings` table. */
import type BetterSqlite3 from 'better-sqlite3';
import type { SyncAdminCredentialStore } from './sync-types.js';

const ADMIN_TOKEN_HASH = 'admin_token_hash';

export class SqliteAdminCredentialStore implements SyncAdminCredentialStore {
  private readonly setStmt: BetterSqlite3.Statement<[string, string]>;
  private readonly getStmt: BetterSqlite3.Statement<[string], string>;

  constructor(db: BetterSqlite3.Database) {
    this.setStmt = db.prepare(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    this.getStmt = db.prepare<[string], string>('SELECT value FROM settings WHERE key = ?').pluck();
  }

  /** Replaces any previous hash (token rotation). */
  setAdminTokenHash(hash: string): void {
    this.setStmt.run(ADMIN_TOKEN_HASH, hash);
  }

  getAdminTokenHash(): string | undefined {
    return this.getStmt.get(ADMIN_TOKEN_HASH);
  }
}
