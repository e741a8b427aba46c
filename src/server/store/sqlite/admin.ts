/**
 * Issuer-wide settings in the key/value `settings` table: the admin bearer token's hash, and the
 * signing keys compromise rotations withdrew (one row each, `withdrawn_key:<kind>:<spki sha256>`,
 * so two rotations never overwrite each other's).
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { WithdrawnKeyRecord } from '../types.js';
import type { SyncAdminCredentialStore } from './sync-types.js';
import { WITHDRAWN_KEY_PREFIX, withdrawnKeyRow, withdrawnKeyOf } from '../withdrawn-key-rows.js';

const ADMIN_TOKEN_HASH = 'admin_token_hash';

export class SqliteAdminCredentialStore implements SyncAdminCredentialStore {
  private readonly setStmt: BetterSqlite3.Statement<[string, string]>;
  private readonly getStmt: BetterSqlite3.Statement<[string], string>;
  private readonly addStmt: BetterSqlite3.Statement<[string, string]>;
  private readonly withdrawnStmt: BetterSqlite3.Statement<[number, string], { key: string; value: string }>;

  constructor(db: BetterSqlite3.Database) {
    this.setStmt = db.prepare(
      'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    this.getStmt = db.prepare<[string], string>('SELECT value FROM settings WHERE key = ?').pluck();
    this.addStmt = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING');
    this.withdrawnStmt = db.prepare<[number, string], { key: string; value: string }>(
      'SELECT key, value FROM settings WHERE substr(key, 1, ?) = ? ORDER BY key',
    );
  }

  /** Replaces any previous hash (token rotation). */
  setAdminTokenHash(hash: string): void {
    this.setStmt.run(ADMIN_TOKEN_HASH, hash);
  }

  getAdminTokenHash(): string | undefined {
    return this.getStmt.get(ADMIN_TOKEN_HASH);
  }

  rememberWithdrawnKey(key: WithdrawnKeyRecord): void {
    const row = withdrawnKeyRow(key);
    this.addStmt.run(row.key, row.value);
  }

  withdrawnKeys(): WithdrawnKeyRecord[] {
    return this.withdrawnStmt
      .all(WITHDRAWN_KEY_PREFIX.length, WITHDRAWN_KEY_PREFIX)
      .map(withdrawnKeyOf)
      .sort((a, b) => a.at - b.at);
  }
}
