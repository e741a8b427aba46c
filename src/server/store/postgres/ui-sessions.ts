/**
 * Fleet-view sessions (../ui-session-types.ts) on PostgreSQL (migration 4), shared by every issuer
 * and worker on the database. An insertion (sweep, bounds, insert) is one transaction under an
 * advisory lock, so concurrent sign-ins on several issuers keep the bounds; a touch is
 * one conditional UPDATE, so two issuers touching one session each see it live or neither does
 * once it expired, and the idle clock only moves forward (GREATEST), whichever issuer's clock is
 * behind.
 */
import type { UiSessionLimits, UiSessionRow, UiSessionStore } from '../ui-session-types.js';
import type { Db } from './db.js';
import type { Enter } from './fleet.js';
import { toSessionRow, type SessionDbRow } from '../sqlite/ui-sessions.js';

/** The advisory lock sign-ins take turns on ("sigil" and a number, as the other lock keys: audit.ts, issuer-claim.ts, migrations.ts). */
const UI_SESSIONS_LOCK_KEY = 0x7369_6769_6c00_04n;

export class PgUiSessionStore implements UiSessionStore {
  constructor(
    private readonly db: Db,
    private readonly enter: Enter,
  ) {}

  insert(row: UiSessionRow, l: UiSessionLimits): Promise<void> {
    return this.enter(() =>
      this.db.atomic(async (sql) => {
        // Sign-ins take turns (they are rare): under READ COMMITTED the bounds below could not see
        // the rows of sign-ins racing on other issuers, and a user could overshoot maxPerUser.
        await sql`SELECT pg_advisory_xact_lock(${UI_SESSIONS_LOCK_KEY.toString()}::bigint)`;
        await sql`DELETE FROM ui_sessions WHERE ${l.now}::bigint - last_seen_at >= ${l.idleMs}
                    OR ${l.now}::bigint - created_at >= ${l.absoluteMs}`;
        await sql`DELETE FROM ui_sessions WHERE id_hash IN (SELECT id_hash FROM ui_sessions WHERE user_name = ${row.user}
                    ORDER BY last_seen_at DESC, created_at DESC, id_hash OFFSET ${Math.max(0, l.maxPerUser - 1)})`;
        await sql`DELETE FROM ui_sessions WHERE id_hash IN (SELECT id_hash FROM ui_sessions
                    ORDER BY last_seen_at DESC, created_at DESC, id_hash OFFSET ${Math.max(0, l.maxSessions - 1)})`;
        await sql`INSERT INTO ui_sessions (id_hash, user_name, role, created_at, last_seen_at, remote, credential, seal)
                  VALUES (${row.idHash}, ${row.user}, ${row.role}, ${row.createdAt}, ${row.lastSeenAt},
                          ${row.remote}, ${row.credential}, ${row.seal})`;
      }),
    );
  }

  touch(idHash: string, now: number, idleMs: number, absoluteMs: number): Promise<UiSessionRow | undefined> {
    return this.enter(async () => {
      // One statement, one snapshot: the live row's clock moves, an expired row goes (so no
      // issuer's clock can bring it back), an unknown id changes nothing.
      const [r] = await this.db.sql<SessionDbRow[]>`
        WITH expired AS (
          DELETE FROM ui_sessions WHERE id_hash = ${idHash}
             AND (${now}::bigint - last_seen_at >= ${idleMs} OR ${now}::bigint - created_at >= ${absoluteMs})
        )
        UPDATE ui_sessions SET last_seen_at = GREATEST(last_seen_at, ${now})
         WHERE id_hash = ${idHash} AND ${now}::bigint - last_seen_at < ${idleMs}
           AND ${now}::bigint - created_at < ${absoluteMs}
        RETURNING id_hash, user_name, role, created_at, last_seen_at, remote, credential, seal`;
      return r ? toSessionRow(r) : undefined;
    });
  }

  delete(idHash: string): Promise<boolean> {
    return this.enter(async () => (await this.db.sql`DELETE FROM ui_sessions WHERE id_hash = ${idHash}`).count > 0);
  }

  count(): Promise<number> {
    return this.enter(async () => {
      const [r] = await this.db.sql<{ n: string }[]>`SELECT count(*) AS n FROM ui_sessions`;
      return Number(r!.n);
    });
  }
}
