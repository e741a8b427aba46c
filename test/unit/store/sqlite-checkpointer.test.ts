/**
 * A busy SQLite store checkpoints its WAL from a worker thread (src/server/store/sqlite/checkpointer.ts,
 * issue #14): copying pages and fsyncing no longer run inside a COMMIT on the event loop. The
 * writer keeps a raised autocheckpoint as a safety net, close() ends the worker, nothing is lost.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AsyncSqliteStores,
  CHECKPOINTER_AFTER_TX,
  openAsyncSqliteStores,
} from '../../../src/server/store/sqlite/async.js';
import { SAFETY_NET_PAGES } from '../../../src/server/store/sqlite/checkpointer.js';
import { tempDir } from './helpers.js';

describe('checkpoints off the event loop', () => {
  const dirs: Array<ReturnType<typeof tempDir>> = [];
  afterEach(() => dirs.splice(0).forEach((d) => d.remove()));

  it('a store that committed enough transactions hands its checkpoints to a worker, which copies the WAL into the file', async () => {
    const d = tempDir();
    dirs.push(d);
    const s = openAsyncSqliteStores(d.dbPath) as AsyncSqliteStores;
    const group = (n: number) =>
      s.withWriteTx((tx) =>
        tx.audit.append({ action: 'renew', outcome: 'ok', details: { n, pad: 'x'.repeat(400) } }, n),
      );
    for (let i = 0; i < CHECKPOINTER_AFTER_TX - 1; i++) await group(i);
    expect(s.checkpointer).toBeUndefined(); // not busy yet: SQLite's own checkpoints
    await group(CHECKPOINTER_AFTER_TX);
    const cp = s.checkpointer!;
    expect(cp).toBeDefined();
    await cp.ready;
    const writer = (s as unknown as { writer: Database.Database }).writer;
    expect(writer.pragma('wal_autocheckpoint', { simple: true })).toBe(SAFETY_NET_PAGES);
    const fileBefore = statSync(d.dbPath).size;
    for (let i = 0; i < 300; i++) await group(1000 + i); // ~300 pages of WAL, below the safety net
    for (let t = 0; t < 400 && statSync(d.dbPath).size === fileBefore; t++) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(d.dbPath).size).toBeGreaterThan(fileBefore); // only the worker copies pages now
    expect(await cp.count()).toBeGreaterThan(0);
    await s.close();
    const db = new Database(d.dbPath, { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) FROM audit_log').pluck().get()).toBe(CHECKPOINTER_AFTER_TX + 300);
    } finally {
      db.close();
    }
  }, 30_000);

  it('a process whose last work is closing the store waits for the worker instead of exiting early', async () => {
    const d = tempDir();
    dirs.push(d);
    const mod = resolve('src/server/store/sqlite/async.ts');
    const script = `import { openAsyncSqliteStores, CHECKPOINTER_AFTER_TX } from ${JSON.stringify(mod)};
      const s = openAsyncSqliteStores(${JSON.stringify(d.dbPath)});
      for (let i = 0; i < CHECKPOINTER_AFTER_TX; i++) await s.withWriteTx((tx) => tx.audit.append({ action: 'renew', outcome: 'ok' }, i));
      console.log(s.checkpointer ? 'worker' : 'no worker');
      await s.close();
      console.log('closed');`;
    const out = await new Promise<string>((res, rej) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (e, o) =>
        e ? rej(e) : res(o.trim()),
      ),
    );
    expect(out.split('\n')).toEqual(['worker', 'closed']);
  }, 60_000);

  it('an in-memory store never starts one', async () => {
    const s = openAsyncSqliteStores(':memory:') as AsyncSqliteStores;
    for (let i = 0; i < CHECKPOINTER_AFTER_TX + 1; i++)
      await s.withWriteTx((tx) => tx.audit.append({ action: 'renew', outcome: 'ok' }, i));
    expect(s.checkpointer).toBeUndefined();
    await s.close();
  });
});
