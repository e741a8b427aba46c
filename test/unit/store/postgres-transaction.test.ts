/**
 * withWriteTx on PostgreSQL drives its transaction by hand on a reserved connection, BEGIN sent
 * with the first statement (store/postgres/transaction.ts). With a pool of ONE connection, every
 * case below also shows that the connection goes back to the pool clean: a later statement
 * outside any transaction commits by itself (had the ROLLBACK been skipped, it would run inside
 * the aborted transaction and fail with 25P02, or sit uncommitted in an open one).
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresStores, type PostgresStores } from '../../../src/server/store/postgres/index.js';
import { openPool } from '../../../src/server/store/postgres/connection.js';
import { runTransaction } from '../../../src/server/store/postgres/transaction.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { instance } from './conformance/fixtures.js';

let pg: Postgres;
let url: string;
let stores: PostgresStores;
/** A second, independent connection: sees only what was committed. */
let other: postgres.Sql;
const statements: string[] = [];
const T0 = 1_700_000_000_000;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('txpipe'));
  stores = openPostgresStores(url, { max: 1, onStatement: (s) => statements.push(s.trim().split(/\s+/)[0]!) });
  await stores.ready;
  other = postgres(url, { max: 1, onnotice: () => undefined });
}, 60_000);

afterAll(async () => {
  await other?.end();
  await stores?.close();
  await pg?.stop();
});

async function committedRole(name: string): Promise<boolean> {
  return (await other`SELECT 1 FROM resources WHERE kind = 'role' AND name = ${name}`).length === 1;
}

describe('withWriteTx with BEGIN sent alongside the first statement', () => {
  it('commits: BEGIN, the statements, COMMIT, in that order; visible to another connection after', async () => {
    statements.length = 0;
    await stores.withWriteTx(async (tx) => {
      await tx.resources.put('role', 'r-commit', {}, T0);
      expect(await committedRole('r-commit')).toBe(false); // not before COMMIT
    });
    expect(statements[0]).toBe('BEGIN');
    expect(statements.at(-1)).toBe('COMMIT');
    expect(await committedRole('r-commit')).toBe(true);
  });

  it('a failing first statement rejects with its own error; nothing is written; the connection is clean', async () => {
    await stores.instances.create(instance('dup'));
    await expect(
      stores.withWriteTx(async (tx) => {
        await tx.instances.create(instance('dup')); // the first statement: a unique violation
        await tx.resources.put('role', 'r-after-dup', {}, T0);
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await committedRole('r-after-dup')).toBe(false);
    await stores.resources.put('role', 'r-outside-1', {}, T0);
    expect(await committedRole('r-outside-1')).toBe(true);
  });

  it('fn that swallows a failed statement still rejects (the database rolled back), and nothing is written', async () => {
    await expect(
      stores.withWriteTx(async (tx) => {
        await tx.resources.put('role', 'r-swallowed', {}, T0);
        await tx.instances.create(instance('dup')).catch(() => undefined);
        return 'done';
      }),
    ).rejects.toThrow();
    expect(await committedRole('r-swallowed')).toBe(false);
    await stores.resources.put('role', 'r-outside-2', {}, T0);
    expect(await committedRole('r-outside-2')).toBe(true);
  });

  it('fn that throws before its first statement sends nothing at all, and rejects with its error', async () => {
    statements.length = 0;
    await expect(
      stores.withWriteTx(async () => {
        throw new Error('refused before any statement');
      }),
    ).rejects.toThrow('refused before any statement');
    expect(statements).toEqual([]);
    await stores.resources.put('role', 'r-outside-3', {}, T0);
    expect(await committedRole('r-outside-3')).toBe(true);
  });

  it('fn that throws after its statements rolls them back', async () => {
    await expect(
      stores.withWriteTx(async (tx) => {
        await tx.resources.put('role', 'r-thrown', {}, T0);
        throw new Error('changed its mind');
      }),
    ).rejects.toThrow('changed its mind');
    expect(await committedRole('r-thrown')).toBe(false);
    expect(statements.at(-1)).toBe('ROLLBACK');
  });
});

describe('the first statement, whatever makes it, runs inside the transaction', () => {
  it('sql.unsafe first, then a failure: rolled back (it went out after BEGIN, in one batch)', async () => {
    const pool = openPool(url, { max: 1 });
    try {
      await expect(
        runTransaction(pool, undefined, async (tx) => {
          await tx.sql.unsafe(`INSERT INTO settings (key, value) VALUES ('unsafe-first', '1')`);
          throw new Error('after the first statement');
        }),
      ).rejects.toThrow('after the first statement');
      // An identifier helper first makes no statement; the template after it is the first one.
      await expect(
        runTransaction(pool, undefined, async (tx) => {
          const table = tx.sql('settings');
          await tx.sql`INSERT INTO ${table} (key, value) VALUES ('template-first', '1')`;
          throw new Error('after the first statement');
        }),
      ).rejects.toThrow('after the first statement');
      expect(await other`SELECT key FROM settings WHERE key IN ('unsafe-first', 'template-first')`).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  it('something that would send outside the transaction first is refused before it is sent', async () => {
    const pool = openPool(url, { max: 1 });
    try {
      await expect(
        runTransaction(pool, undefined, async (tx) => {
          await tx.sql.notify('sigil_test', 'x');
        }),
      ).rejects.toThrow(/first statement of a transaction/);
    } finally {
      await pool.end();
    }
  });
});
