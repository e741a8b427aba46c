/**
 * The admin bearer token's hash and other issuer-wide settings, in the key/value `settings` table
 * (the signing keys compromise rotations withdrew: one row each, ../withdrawn-key-rows.ts).
 */
import type { AdminCredentialStore, WithdrawnKeyRecord } from '../types.js';
import { WITHDRAWN_KEY_PREFIX, withdrawnKeyRow, withdrawnKeyOf } from '../withdrawn-key-rows.js';
import type { Db } from './db.js';

const ADMIN_TOKEN_HASH = 'admin_token_hash';

export class PgAdminCredentialStore implements AdminCredentialStore {
  constructor(private readonly db: Db) {}

  /** Replaces any previous hash (token rotation). */
  async setAdminTokenHash(hash: string): Promise<void> {
    await this.db.sql`
      INSERT INTO settings (key, value) VALUES (${ADMIN_TOKEN_HASH}, ${hash})
      ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
  }

  async getAdminTokenHash(): Promise<string | undefined> {
    const [row] = await this.db.sql<{ value: string }[]>`SELECT value FROM settings WHERE key = ${ADMIN_TOKEN_HASH}`;
    return row?.value;
  }

  async rememberWithdrawnKey(key: WithdrawnKeyRecord): Promise<void> {
    const row = withdrawnKeyRow(key);
    await this.db.sql`INSERT INTO settings (key, value) VALUES (${row.key}, ${row.value}) ON CONFLICT (key) DO NOTHING`;
  }

  async withdrawnKeys(): Promise<WithdrawnKeyRecord[]> {
    // starts_with, not LIKE ('_' is a wildcard) nor a range (collation-dependent).
    const rows = await this.db.sql<{ key: string; value: string }[]>`
      SELECT key, value FROM settings WHERE starts_with(key, ${WITHDRAWN_KEY_PREFIX})`;
    return rows.map(withdrawnKeyOf).sort((a, b) => a.at - b.at);
  }
}
