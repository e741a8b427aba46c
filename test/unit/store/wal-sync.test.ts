/**
 * Commits answered only once they would survive a power loss, with the WAL flushed off the event
 * loop (src/server/store/sqlite/wal-sync.ts, async.ts). The flush is held in the tests: a
 * transaction whose COMMIT is visible on another connection must stay unanswered until a flush
 * that started after it completes; commits during a flush share the next one; a failed flush
 * fails the transactions that waited on it; a replay read outside a transaction waits too.
 */
import { fstatSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AsyncSqliteStores, openAsyncSqliteStores } from '../../../src/server/store/sqlite/async.js';
import { openSqlite } from '../../../src/server/store/sqlite/db.js';
import { WalSync } from '../../../src/server/store/sqlite/wal-sync.js';
import type { Stores } from '../../../src/server/store/types.js';
import { startIssuer } from '../../integration/harness.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-walsync-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A flush the test completes or fails by hand; `calls` records each (with the inode flushed). */
function heldFlush() {
  const calls: Array<{ ino: number; done(): void; fail(e: Error): void }> = [];
  const flush = (fd: number) =>
    new Promise<void>((resolve, reject) => calls.push({ ino: fstatSync(fd).ino, done: resolve, fail: reject }));
  return { calls, flush };
}

/** Let every promise and turn that can run, run. */
async function settleTurns(): Promise<void> {
  for (let i = 0; i < 5; i++) await nextTurn();
}

function tracked<T>(p: Promise<T>): { p: Promise<T>; state(): 'pending' | 'resolved' | 'rejected' } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  return { p, state: () => state };
}

describe('WalSync', () => {
  it('nothing committed: durable at once, no flush', async () => {
    const { calls, flush } = heldFlush();
    const s = new WalSync(join(dir, 'x-wal'), flush);
    await s.durable();
    expect(calls).toHaveLength(0);
  });

  it('a commit during a flush waits for the next flush; commits before share one', async () => {
    const wal = join(dir, 'x-wal');
    writeFileSync(wal, '');
    const { calls, flush } = heldFlush();
    const s = new WalSync(wal, flush);
    s.committed();
    s.committed();
    const a = tracked(s.durable());
    const b = tracked(s.durable()); // the same two commits: the same flush
    await settleTurns();
    expect(calls).toHaveLength(1);
    s.committed(); // lands while the first flush runs: it may not cover this one
    const c = tracked(s.durable());
    await settleTurns();
    expect(calls).toHaveLength(1);
    calls[0]!.done();
    await settleTurns();
    expect([a.state(), b.state(), c.state()]).toEqual(['resolved', 'resolved', 'pending']);
    expect(calls).toHaveLength(2);
    calls[1]!.done();
    await settleTurns();
    expect(c.state()).toBe('resolved');
    await s.durable(); // all on disk: no third flush
    expect(calls).toHaveLength(2);
    await s.close();
  });

  it('a failed flush fails its waiters and every later one (store_unavailable, naming the cause): no later flush vouches for it', async () => {
    const wal = join(dir, 'x-wal');
    writeFileSync(wal, '');
    const { calls, flush } = heldFlush();
    const s = new WalSync(wal, flush);
    s.committed();
    const a = s.durable();
    await settleTurns();
    calls[0]!.fail(Object.assign(new Error('I/O error'), { code: 'EIO' }));
    await expect(a).rejects.toMatchObject({
      code: 'store_unavailable',
      message: expect.stringMatching(/\(EIO\).*no later flush can prove.*until it is restarted/),
    });
    // Linux reports a writeback error once: a later fdatasync that succeeds proves nothing.
    s.committed();
    await expect(s.durable()).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(s.flushedNow()).rejects.toMatchObject({ code: 'store_unavailable' });
    expect(calls).toHaveLength(1);
    await s.close();
  });

  it('no WAL file: nothing waits in one, so nothing to flush (and no failure)', async () => {
    const { calls, flush } = heldFlush();
    const s = new WalSync(join(dir, 'absent-wal'), flush);
    s.committed();
    await s.durable();
    await s.flushedNow();
    expect(calls).toHaveLength(0);
    await s.close();
  });

  it('flushedNow: a flush that starts after the call, even with nothing committed here (another process may have)', async () => {
    const wal = join(dir, 'x-wal');
    writeFileSync(wal, '');
    const { calls, flush } = heldFlush();
    const s = new WalSync(wal, flush);
    const f = tracked(s.flushedNow());
    await settleTurns();
    expect(calls).toHaveLength(1);
    expect(f.state()).toBe('pending');
    calls[0]!.done();
    await f.p;
    await s.close();
  });

  it('flushes the WAL file that is there now: one replaced under it is opened anew', async () => {
    const wal = join(dir, 'x-wal');
    writeFileSync(wal, 'a');
    const { calls, flush } = heldFlush();
    const s = new WalSync(wal, flush);
    s.committed();
    const first = s.durable();
    await settleTurns();
    calls[0]!.done();
    await first;
    renameSync(wal, `${wal}.old`);
    writeFileSync(wal, 'b');
    s.committed();
    const second = s.durable();
    await settleTurns();
    expect(calls[1]!.ino).not.toBe(calls[0]!.ino);
    expect(calls[1]!.ino).toBe(statSync(wal).ino);
    calls[1]!.done();
    await second;
    await s.close();
  });
});

describe('the SQLite store with flush durability', () => {
  const open = (flush: (fd: number) => Promise<void>): Stores =>
    openAsyncSqliteStores(join(dir, 'issuer.db'), { durability: 'flush', flushWal: flush });

  it('answers a transaction only after a flush that began after its COMMIT', async () => {
    const { calls, flush } = heldFlush();
    const stores = open(flush);
    const other = new Database(join(dir, 'issuer.db'), { readonly: true });
    try {
      const tx = tracked(
        stores.withWriteTx(async (t) => {
          await t.admin.setAdminTokenHash('h1');
          return 'answered';
        }),
      );
      await expect.poll(() => calls.length).toBe(1);
      // Committed (the read connection sees it) but not flushed: not answered.
      expect(other.prepare('SELECT value FROM settings WHERE value = ?').get('h1')).toEqual({ value: 'h1' });
      await settleTurns();
      expect(tx.state()).toBe('pending');
      calls[0]!.done();
      expect(await tx.p).toBe('answered');
      // The writer runs NORMAL: SQLite itself does not fsync in COMMIT.
      expect((stores as unknown as { writer: Database.Database }).writer.pragma('synchronous', { simple: true })).toBe(
        1,
      );
    } finally {
      other.close();
      const closing = stores.close();
      for (const c of calls.slice(1)) c.done();
      await closing;
    }
  });

  it('a top-level write and a replay read outside a transaction wait for the flush too', async () => {
    const { calls, flush } = heldFlush();
    const stores = open(flush);
    try {
      const put = tracked(stores.admin.setAdminTokenHash('h2'));
      await expect.poll(() => calls.length).toBe(1);
      await settleTurns();
      expect(put.state()).toBe('pending');
      calls[0]!.done();
      await put.p;
      // Committed since the last flush: whenDurable waits for a new one.
      const write = stores.withWriteTx((t) => t.admin.setAdminTokenHash('h3'));
      await expect.poll(() => calls.length).toBe(2);
      // A replay's wait asked while that flush runs: a flush that starts after it (the next one).
      const read = tracked(stores.whenDurable!());
      await settleTurns();
      expect(read.state()).toBe('pending');
      calls[1]!.done();
      await write;
      await expect.poll(() => calls.length).toBe(3);
      expect(read.state()).toBe('pending');
      calls[2]!.done();
      await read.p;
      // Nothing new here, but another process may have committed: a flush of its own.
      const again = stores.whenDurable!();
      await expect.poll(() => calls.length).toBe(4);
      calls[3]!.done();
      await again;
    } finally {
      await stores.close();
    }
  });

  it('another process on the same file: a replay read there waits for a flush of its own', async () => {
    const a = heldFlush();
    const b = heldFlush();
    const storesA = open(a.flush);
    const storesB = open(b.flush);
    try {
      const tx = tracked(storesA.withWriteTx((t) => t.admin.setAdminTokenHash('hA')));
      await expect.poll(() => a.calls.length).toBe(1);
      // B reads A's row (committed, A's flush held) and must not vouch for it without a flush.
      expect(await storesB.admin.getAdminTokenHash()).toBe('hA');
      const bDurable = tracked(storesB.whenDurable!());
      await expect.poll(() => b.calls.length).toBe(1);
      expect(bDurable.state()).toBe('pending');
      b.calls[0]!.done();
      await bDurable.p;
      expect(tx.state()).toBe('pending');
      a.calls[0]!.done();
      await tx.p;
    } finally {
      await storesB.close();
      await storesA.close();
    }
  });

  it('a write committed just before close() is answered, and close() flushes it', async () => {
    let flushes = 0;
    const stores = open(async () => {
      flushes++;
    });
    const put = stores.admin.setAdminTokenHash('last');
    const closing = stores.close();
    await expect(put).resolves.toBeUndefined();
    await closing;
    expect(flushes).toBeGreaterThan(0);
  });

  it('a failed flush fails the transaction (store_unavailable) though its rows are committed', async () => {
    const { calls, flush } = heldFlush();
    const stores = open(flush);
    try {
      const tx = stores.withWriteTx((t) => t.admin.setAdminTokenHash('h4'));
      await expect.poll(() => calls.length).toBe(1);
      expect(stores.durabilityFailure!()).toBeUndefined();
      calls[0]!.fail(Object.assign(new Error('EIO'), { code: 'EIO' }));
      await expect(tx).rejects.toMatchObject({ code: 'store_unavailable' });
      // Every later write fails too, and GET /readyz says so (a load balancer moves agents away).
      await expect(stores.admin.setAdminTokenHash('h5')).rejects.toMatchObject({ code: 'store_unavailable' });
      expect(stores.durabilityFailure!()).toMatchObject({ code: 'store_unavailable' });
      const h = await startIssuer();
      try {
        Object.assign(h.ctx, {
          stores: Object.assign(Object.create(h.ctx.stores) as Stores, {
            durabilityFailure: () => stores.durabilityFailure!(),
          }),
        });
        const res = await h.request('GET', '/readyz');
        expect(res.status).toBe(503);
        expect(res.text).toMatch(/could not flush the database's write-ahead log/);
      } finally {
        await h.close();
      }
    } finally {
      await stores.close();
    }
  });

  it('with the real fdatasync: concurrent transactions share flushes, and every one is answered', async () => {
    let flushes = 0;
    const { promisify } = await import('node:util');
    const { fdatasync } = await import('node:fs');
    const stores = open((fd) => {
      flushes++;
      return promisify(fdatasync)(fd);
    });
    try {
      const n = 64;
      const done = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          stores.withWriteTx((t) => t.admin.setAdminTokenHash(`h${i}`).then(() => i)),
        ),
      );
      expect(done).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(flushes).toBeGreaterThan(0);
      expect(flushes).toBeLessThan(n);
    } finally {
      await stores.close();
    }
  });

  it('a database SQLite kept out of WAL mode (a rollback journal): FULL, no flush of its own', async () => {
    const { calls, flush } = heldFlush();
    const path = join(dir, 'journal.db');
    const writer = openSqlite(path);
    writer.pragma('journal_mode = DELETE');
    const stores = new AsyncSqliteStores(writer, undefined, {
      checkpointPath: path,
      durability: 'flush',
      flushWal: flush,
    });
    await stores.withWriteTx((t) => t.admin.setAdminTokenHash('j'));
    expect(calls).toHaveLength(0);
    expect(writer.pragma('synchronous', { simple: true })).toBe(2);
    await stores.close();
  });

  it('`full` and `normal` need no flush of their own; in memory there is no WAL to flush', async () => {
    for (const durability of ['full', 'normal'] as const) {
      const { calls, flush } = heldFlush();
      const stores = openAsyncSqliteStores(join(dir, `${durability}.db`), { durability, flushWal: flush });
      await stores.withWriteTx((t) => t.admin.setAdminTokenHash('h'));
      expect(calls).toHaveLength(0);
      expect((stores as unknown as { writer: Database.Database }).writer.pragma('synchronous', { simple: true })).toBe(
        durability === 'full' ? 2 : 1,
      );
      await stores.close();
    }
  });
});
