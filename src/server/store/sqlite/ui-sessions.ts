/**
 * Fleet-view sessions (../ui-session-types.ts) on SQLite (migration 10). Writes run as one
 * transaction of their own behind the write queue, so each applies its rule atomically against
 * every other writer of the file. A touch first looks the id up on the read connection: a cookie
 * that names no session (anyone on the port can send one per request) never takes the write queue
 * the renewals share.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { UiSessionLimits, UiSessionRow, UiSessionStore } from '../ui-session-types.js';
import type { Runner } from './issuers.js';

/** A row as either database returns it (PostgreSQL's BIGINT comes back as text). */
export interface SessionDbRow {
  id_hash: string;
  user_name: string;
  role: 'admin' | 'viewer';
  created_at: number | string;
  last_seen_at: number | string;
  remote: string;
  credential: string;
  seal: string;
}

export const SESSION_COLS = 'id_hash, user_name, role, created_at, last_seen_at, remote, credential, seal';

export const toSessionRow = (r: SessionDbRow): UiSessionRow => ({
  idHash: r.id_hash,
  user: r.user_name,
  role: r.role,
  createdAt: Number(r.created_at),
  lastSeenAt: Number(r.last_seen_at),
  remote: r.remote,
  credential: r.credential,
  seal: r.seal,
});

export class SqliteUiSessionStore implements UiSessionStore {
  constructor(
    private readonly writer: BetterSqlite3.Database,
    private readonly reader: BetterSqlite3.Database,
    private readonly read: Runner,
    private readonly write: Runner,
  ) {}

  insert(row: UiSessionRow, l: UiSessionLimits): Promise<void> {
    return this.write(() => {
      const db = this.writer;
      db.prepare('DELETE FROM ui_sessions WHERE ? - last_seen_at >= ? OR ? - created_at >= ?').run(
        l.now,
        l.idleMs,
        l.now,
        l.absoluteMs,
      );
      // Most recently used first; everything past the first keep-1 goes (LIMIT -1: no limit).
      db.prepare(
        `DELETE FROM ui_sessions WHERE id_hash IN (SELECT id_hash FROM ui_sessions WHERE user_name = ?
           ORDER BY last_seen_at DESC, created_at DESC, id_hash LIMIT -1 OFFSET ?)`,
      ).run(row.user, Math.max(0, l.maxPerUser - 1));
      db.prepare(
        `DELETE FROM ui_sessions WHERE id_hash IN (SELECT id_hash FROM ui_sessions
           ORDER BY last_seen_at DESC, created_at DESC, id_hash LIMIT -1 OFFSET ?)`,
      ).run(Math.max(0, l.maxSessions - 1));
      db.prepare(`INSERT INTO ui_sessions (${SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(
        row.idHash,
        row.user,
        row.role,
        row.createdAt,
        row.lastSeenAt,
        row.remote,
        row.credential,
        row.seal,
      );
    });
  }

  async touch(idHash: string, now: number, idleMs: number, absoluteMs: number): Promise<UiSessionRow | undefined> {
    const known = await this.read(
      () => this.reader.prepare('SELECT 1 FROM ui_sessions WHERE id_hash = ?').get(idHash) !== undefined,
    );
    if (!known) return undefined;
    return this.write(() => {
      const r = this.writer
        .prepare<[number, string, number, number, number, number], SessionDbRow>(
          `UPDATE ui_sessions SET last_seen_at = max(last_seen_at, ?)
            WHERE id_hash = ? AND ? - last_seen_at < ? AND ? - created_at < ? RETURNING ${SESSION_COLS}`,
        )
        .get(now, idHash, now, idleMs, now, absoluteMs);
      if (r) return toSessionRow(r);
      // Unknown or expired: an expired row goes now, so no clock can bring it back.
      this.writer.prepare('DELETE FROM ui_sessions WHERE id_hash = ?').run(idHash);
      return undefined;
    });
  }

  delete(idHash: string): Promise<boolean> {
    return this.write(() => this.writer.prepare('DELETE FROM ui_sessions WHERE id_hash = ?').run(idHash).changes > 0);
  }

  count(): Promise<number> {
    return this.write(() => (this.writer.prepare('SELECT count(*) AS n FROM ui_sessions').get() as { n: number }).n);
  }
}
