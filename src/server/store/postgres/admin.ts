/** The admin bearer token's hash and other issuer-wide settings, in the key/value `settings` table. */
import type { AdminCredentialStore } from '../types.js';
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
}
