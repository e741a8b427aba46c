/** Locks on whole bots, on PostgreSQL (types.ts BotLockStore). A row exists only while locked. */
import type { BotLockStore } from '../types.js';
import type { Db } from './db.js';

export class PgBotLockStore implements BotLockStore {
  constructor(private readonly db: Db) {}

  async setLocked(bot: string, locked: boolean, reason: string | null, now: number): Promise<void> {
    // Locking an already locked bot refreshes reason and time (the newest decision is shown).
    if (locked)
      await this.db.sql`
        INSERT INTO bot_locks (bot, reason, at) VALUES (${bot}, ${reason}, ${now})
        ON CONFLICT (bot) DO UPDATE SET reason = excluded.reason, at = excluded.at`;
    else await this.db.sql`DELETE FROM bot_locks WHERE bot = ${bot}`;
  }

  async isLocked(bot: string): Promise<boolean> {
    return (await this.db.sql`SELECT 1 FROM bot_locks WHERE bot = ${bot}`).length > 0;
  }

  async listLocked(): Promise<Array<{ bot: string; reason: string | null; at: number }>> {
    const rows = await this.db.sql<{ bot: string; reason: string | null; at: number }[]>`
      SELECT bot, reason, at FROM bot_locks ORDER BY bot COLLATE "C"`;
    return rows.map((r) => ({ bot: r.bot, reason: r.reason, at: r.at }));
  }
}
