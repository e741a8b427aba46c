/**
 * SQLite's fleet-view sessions: a cookie that names no session is answered from the read
 * connection and never takes the write queue the renewals share (anyone on the port can send one
 * with every request).
 */
import { describe, expect, it } from 'vitest';
import { openSqlite } from '../../../src/server/store/sqlite/db.js';
import { SqliteUiSessionStore } from '../../../src/server/store/sqlite/ui-sessions.js';

describe('SQLite fleet-view sessions', () => {
  it('an unknown id is looked up without a write; a known one is written', async () => {
    const db = openSqlite(':memory:');
    let writes = 0;
    const run = <T>(fn: () => T): Promise<T> => Promise.resolve(fn());
    const write = <T>(fn: () => T): Promise<T> => {
      writes++;
      return run(fn);
    };
    const s = new SqliteUiSessionStore(db, db, run, write);
    const h = 'a'.repeat(64);
    for (let i = 0; i < 5; i++) expect(await s.touch('b'.repeat(64), 1000, 100, 1000)).toBeUndefined();
    expect(writes).toBe(0);
    await s.insert(
      {
        idHash: h,
        user: 'u',
        role: 'viewer',
        createdAt: 1000,
        lastSeenAt: 1000,
        remote: 'r',
        credential: 'x',
        seal: 's',
      },
      { now: 1000, idleMs: 100, absoluteMs: 1000, maxSessions: 10, maxPerUser: 10 },
    );
    expect((await s.touch(h, 1050, 100, 1000))?.lastSeenAt).toBe(1050);
    expect(writes).toBe(2);
    db.close();
  });
});
