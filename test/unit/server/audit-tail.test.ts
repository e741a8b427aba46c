/**
 * The audit tail (server/events/audit-watcher.ts) reads only the rows after the last one it saw
 * (issue #14). Before, every look read every row of its two-minute window again and dropped the
 * ones already seen: at 1,700 renewals/s that was ~200,000 rows (~1 s of CPU, in one synchronous
 * read that held the issuer's event loop) every 5 s. Real SQLite stores, a spy on what `list`
 * returns.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AuditWatcher, type AuditBatch } from '../../../src/server/events/audit-watcher.js';
import { openAsyncSqliteStores } from '../../../src/server/store/sqlite/async.js';
import type { Stores } from '../../../src/server/store/types.js';
import { tempDir } from '../store/helpers.js';

const T0 = 1_800_000_000_000;

describe('AuditWatcher on a real store', () => {
  let stores: Stores | undefined;
  let dir: ReturnType<typeof tempDir> | undefined;
  afterEach(async () => {
    await stores?.close();
    dir?.remove();
    stores = dir = undefined;
  });

  it('reads only the rows after the last one seen, and still delivers each new row once, in order', async () => {
    dir = tempDir();
    const s = (stores = openAsyncSqliteStores(dir.dbPath));
    for (let i = 0; i < 50; i++) await s.audit.append({ action: 'renew', outcome: 'ok', details: { i } }, T0 + i);
    let read = 0;
    const audit = {
      head: () => s.audit.head(),
      list: async (o?: { since?: number; limit?: number; afterSeq?: number }) => {
        const rows = await s.audit.list(o);
        read += rows.length;
        return rows;
      },
    };
    const w = new AuditWatcher({ audit, now: () => T0 + 1000 });
    const got: AuditBatch[] = [];
    w.subscribe((b) => void got.push(b));
    await w.poll(); // starts at the head: 50 rows of history, not replayed
    // One stamped before the rows already seen (its transaction was prepared earlier), still new.
    await s.audit.append({ action: 'lock', outcome: 'ok' }, T0 + 10);
    await s.audit.append({ action: 'unlock', outcome: 'ok' }, T0 + 60);
    await w.poll();
    expect(got.map((b) => b.rows.map((r) => [r.seq, r.action]))).toEqual([
      [
        [51, 'lock'],
        [52, 'unlock'],
      ],
    ]);
    expect(read).toBe(2); // not the 52 rows of the window
    await w.poll();
    expect(got).toHaveLength(1);
  });

  it('delivers rows only after the durability barrier, and only those up to the head it read before it', async () => {
    dir = tempDir();
    const s = (stores = openAsyncSqliteStores(dir.dbPath));
    let called!: () => void;
    const barrierCalled = new Promise<void>((r) => (called = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let barriers = 0;
    const w = new AuditWatcher({
      audit: s.audit,
      now: () => T0 + 1000,
      whenDurable: () => {
        barriers++;
        called();
        return barriers === 1 ? held : Promise.resolve();
      },
    });
    const got: AuditBatch[] = [];
    w.subscribe((b) => void got.push(b));
    await w.poll(); // the head: nothing to deliver, no barrier
    expect(barriers).toBe(0);
    await s.audit.append({ action: 'lock', outcome: 'ok' }, T0 + 1);
    const look = w.poll();
    await barrierCalled;
    // Committed after the look read the head: not vouched for by this barrier.
    await s.audit.append({ action: 'unlock', outcome: 'ok' }, T0 + 2);
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
    const beforeRelease = got.length;
    release();
    await look;
    expect(beforeRelease).toBe(0);
    expect(got.map((b) => b.rows.map((r) => r.action))).toEqual([['lock']]);
    await w.poll();
    expect(got.map((b) => b.rows.map((r) => r.action))).toEqual([['lock'], ['unlock']]);
    expect(barriers).toBe(2);
  });

  it('reads a large tail in chunks and lets the event loop run between them, every row delivered once', async () => {
    dir = tempDir();
    const s = (stores = openAsyncSqliteStores(dir.dbPath));
    const lists: Array<number | undefined> = [];
    const audit = {
      head: () => s.audit.head(),
      list: async (o?: { since?: number; limit?: number; afterSeq?: number }) => {
        lists.push(o?.limit);
        return s.audit.list(o);
      },
    };
    const w = new AuditWatcher({ audit, now: () => T0 + 1000 });
    const got: AuditBatch[] = [];
    w.subscribe((b) => void got.push(b));
    await w.poll();
    for (let i = 0; i < 600; i++) await s.audit.append({ action: 'renew', outcome: 'ok', details: { i } }, T0 + i);
    // A timer due now must run while the look is between chunks, not only after the whole tail.
    let ranDuringLook = false;
    let chunksBefore = -1;
    setImmediate(() => {
      ranDuringLook = true;
      chunksBefore = got.length;
    });
    await w.poll();
    expect(lists.every((l) => l !== undefined && l <= 256)).toBe(true);
    expect(got.map((b) => b.rows.length)).toEqual([256, 256, 88]);
    expect(got.every((b) => !b.reset)).toBe(true);
    expect(got.flatMap((b) => b.rows.map((r) => r.seq))).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect(ranDuringLook).toBe(true);
    expect(chunksBefore).toBeGreaterThan(0);
    expect(chunksBefore).toBeLessThan(3);
  });
});
