/**
 * What the async SQLite stores add to the synchronous ones (src/server/store/sqlite/async.ts):
 * the FIFO write queue, the separate read connection, close, and lock waits from other
 * connections. The contract itself is checked by ./sqlite-conformance.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../src/server/store/types.js';
import {
  AsyncSqliteStores,
  GROUP_HOLD_BUDGET_MS,
  openAsyncSqliteStores,
} from '../../../src/server/store/sqlite/async.js';
import { openSqlite, openSqliteReader } from '../../../src/server/store/sqlite/db.js';
import { WriteQueue } from '../../../src/server/store/sqlite/write-queue.js';
import { gate, instance, T0 } from './conformance/fixtures.js';
import { tempDir } from './helpers.js';

describe('WriteQueue', () => {
  it('serves waiters in arrival order and hands the lock over without letting a newcomer in', async () => {
    const q = new WriteQueue();
    const order: number[] = [];
    expect(q.tryAcquire()).toBe(true);
    const waiting = [1, 2, 3].map((n) => q.acquire().then(() => order.push(n)));
    expect(q.depth).toBe(4);
    q.release(); // to 1
    await waiting[0];
    expect(q.tryAcquire()).toBe(false); // held by 1: no barging
    q.release(); // to 2
    q.release(); // to 3
    q.release(); // free
    await Promise.all(waiting);
    expect(order).toEqual([1, 2, 3]);
    expect(q.depth).toBe(0);
    expect(q.tryAcquire()).toBe(true);
  });

  it('run releases when fn throws', async () => {
    const q = new WriteQueue();
    await expect(q.run(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    await expect(
      q.run(() => {
        throw new Error('y');
      }),
    ).rejects.toThrow('y');
    expect(await q.run(() => 7)).toBe(7);
  });
});

describe('async sqlite stores', () => {
  let t: ReturnType<typeof tempDir>;
  let s: Stores;
  beforeEach(() => {
    t = tempDir();
    s = openAsyncSqliteStores(t.dbPath);
  });
  afterEach(async () => {
    await s.close();
    t.remove();
  });

  it('answers reads from the read connection while a write transaction is open', async () => {
    await s.instances.create(instance('committed'));
    const release = gate();
    const wrote = gate();
    const tx = s.withWriteTx(async (w) => {
      await w.instances.create(instance('pending'));
      wrote.open();
      await release.opened;
    });
    await wrote.opened;
    // Resolves before the transaction ends: a read never waits for the write queue.
    expect((await s.instances.list()).map((i) => i.id)).toEqual(['committed']);
    release.open();
    await tx;
    expect((await s.instances.list()).map((i) => i.id)).toEqual(['committed', 'pending']);
  });

  it('close waits for queued transactions, then refuses every call', async () => {
    const release = gate();
    const tx = s.withWriteTx(async (w) => {
      await release.opened;
      await w.instances.create(instance('last'));
    });
    const closed = s.close();
    await expect(s.instances.get('x')).rejects.toThrow(TypeError);
    await expect(s.withWriteTx(async () => 1)).rejects.toThrow(/closed/);
    release.open();
    await tx;
    await closed;
    await s.close(); // idempotent
    const again = openAsyncSqliteStores(t.dbPath);
    expect((await again.instances.get('last'))?.id).toBe('last');
    s = again;
  });

  it('verifies a keyed audit chain through the read connection', async () => {
    await s.close();
    s = openAsyncSqliteStores(t.dbPath, { audit: { key: { secret: randomBytes(32), fromSeq: 1, id: 'k1' } } });
    await s.withWriteTx(async (w) => {
      await w.audit.append({ action: 'join', outcome: 'ok' }, T0);
    });
    await s.audit.append({ action: 'renew', outcome: 'ok' }, T0 + 1);
    expect(await s.audit.keyInfo()).toEqual({ id: 'k1', fromSeq: 1 });
    expect(await s.audit.verify()).toEqual({ ok: true, rows: 2 });
  });

  it('reports a write lock held past busy_timeout by another connection as SQLITE_BUSY, and recovers', async () => {
    await s.close();
    const writer = openSqlite(t.dbPath);
    writer.pragma('busy_timeout = 50');
    s = new AsyncSqliteStores(writer, openSqliteReader(t.dbPath));
    const other = new Database(t.dbPath);
    try {
      other.exec('BEGIN IMMEDIATE');
      await expect(s.withWriteTx((w) => w.instances.create(instance('a')))).rejects.toMatchObject({
        code: 'SQLITE_BUSY',
      });
      await expect(s.instances.create(instance('b'))).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
      other.exec('COMMIT');
      // The failed BEGIN released the queue: the next transaction runs.
      await s.withWriteTx((w) => w.instances.create(instance('c')));
      expect((await s.instances.list()).map((i) => i.id)).toEqual(['c']);
    } finally {
      other.close();
    }
  });

  it('a group commits once it has held the loop for its budget, so a backlog is answered in several COMMITs', async () => {
    // Twelve transactions queued at once, each holding the event loop ~2 ms: without the budget they
    // would share one COMMIT (MAX_GROUP 64) and the first would be answered after the twelfth.
    const groups: Array<{ size: number }> = [];
    const onGroup = (m: unknown): void => void groups.push(m as { size: number });
    subscribe('sigil:sqlite:group', onGroup);
    try {
      const order: string[] = [];
      const busy = (ms: number): void => {
        const until = performance.now() + ms;
        while (performance.now() < until);
      };
      const txs = Array.from({ length: 12 }, (_, i) =>
        s
          .withWriteTx(async (w) => {
            await w.instances.create(instance(`backlog-${i}`));
            busy(2);
          })
          .then(() => order.push(`answered-${i}`)),
      );
      await Promise.all(txs);
      expect((await s.instances.list()).length).toBe(12);
      expect(groups.reduce((n, g) => n + g.size, 0)).toBe(12);
      expect(groups.length).toBeGreaterThan(1);
      // Each group stops at the first member that finds the budget spent: at most budget/2 ms + 1 members.
      expect(Math.max(...groups.map((g) => g.size))).toBeLessThanOrEqual(GROUP_HOLD_BUDGET_MS / 2 + 1);
      expect(order).toEqual(Array.from({ length: 12 }, (_, i) => `answered-${i}`));
    } finally {
      unsubscribe('sigil:sqlite:group', onGroup);
    }
  });
});
