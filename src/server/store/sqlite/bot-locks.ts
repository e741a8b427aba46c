/** Locks on whole bots: a locked bot can neither join nor renew. A row exists only while locked. */
import type BetterSqlite3 from 'better-sqlite3';
import type { SyncBotLockStore } from './sync-types.js';

interface BotLockRow {
  bot: string;
  reason: string | null;
  at: number;
}

export class SqliteBotLockStore implements SyncBotLockStore {
  private readonly lockStmt: BetterSqlite3.Statement<[string, string | null, number]>;
  private readonly unlockStmt: BetterSqlite3.Statement<[string]>;
  private readonly isLockedStmt: BetterSqlite3.Statement<[string], number>;
  private readonly listStmt: BetterSqlite3.Statement<[], BotLockRow>;

  constructor(db: BetterSqlite3.Database) {
    // Locking an already locked bot refreshes reason and time (the newest decision is shown).
    this.lockStmt = db.prepare(
      `INSERT INTO bot_locks (bot, reason, at) VALUES (?, ?, ?)
       ON CONFLICT (bot) DO UPDATE SET reason = excluded.reason, at = excluded.at`,
    );
    this.unlockStmt = db.prepare('DELETE FROM bot_locks WHERE bot = ?');
    this.isLockedStmt = db.prepare<[string], number>('SELECT 1 FROM bot_locks WHERE bot = ?').pluck();
    this.listStmt = db.prepare('SELECT bot, reason, at FROM bot_locks ORDER BY bot');
  }

  setLocked(bot: string, locked: boolean, reason: string | null, now: number): void {
    if (locked) this.lockStmt.run(bot, reason, now);
    else this.unlockStmt.run(bot);
  }

  isLocked(bot: string): boolean {
    return this.isLockedStmt.get(bot) !== undefined;
  }

  listLocked(): Array<{ bot: string; reason: string | null; at: number }> {
    return this.listStmt.all().map((r) => ({ bot: r.bot, reason: r.reason, at: r.at }));
  }
}
