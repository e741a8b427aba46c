/** Locks on whole bots, on PostgreSQL (types.ts BotLockStore). A row exists only while locked. */
import type { BotLockStore } from '../types.js';
import { CHANGE_CHANNEL } from './change-feed.js';
import type { Db } from './db.js';

export class PgBotLockStore implements BotLockStore {
  constructor(private readonly db: Db) {}

  async setLocked(bot: string, locked: boolean, reason: string | null, now: number): Promise<void> {
    // Locking an already locked bot refreshes reason and time (the newest decision is shown).
    // Every issuer is told in the same statement (./change-feed.ts; delivered at COMMIT).
    const rows = locked
      ? await this.db.sql`
        WITH w AS (INSERT INTO bot_locks (bot, reason, at) VALUES (${bot}, ${reason}, ${now})
          ON CONFLICT (bot) DO UPDATE SET reason = excluded.reason, at = excluded.at RETURNING 1)
        SELECT pg_notify(${CHANGE_CHANNEL}, 'bot_locks')::text AS notified FROM w`
      : await this.db.sql`
        WITH d AS (DELETE FROM bot_locks WHERE bot = ${bot} RETURNING 1)
        SELECT pg_notify(${CHANGE_CHANNEL}, 'bot_locks')::text AS notified FROM d`;
    if (rows.length > 0) this.db.wrote('bot_locks');
  }

  /** Through the issuer's cache (./policy-cache.ts): every renewal and join asks. */
  async isLocked(bot: string): Promise<boolean> {
    return this.db.cached(
      'bot_locks',
      bot,
      async () => (await this.db.sql`SELECT 1 FROM bot_locks WHERE bot = ${bot}`).length > 0,
    );
  }

  async listLocked(): Promise<Array<{ bot: string; reason: string | null; at: number }>> {
    const rows = await this.db.sql<{ bot: string; reason: string | null; at: number }[]>`
      SELECT bot, reason, at FROM bot_locks ORDER BY bot COLLATE "C"`;
    return rows.map((r) => ({ bot: r.bot, reason: r.reason, at: r.at }));
  }
}
