/**
 * The issuer's pool publishes each statement it sends ({ conn, text }, no parameters) on
 * diagnostics_channel `sigil:postgres:statement`, to in-process subscribers only: the renew-https
 * bench's probe counts statements and round trips per renewal from it (issue #15). Real PostgreSQL.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openPool, type Pool } from '../../../src/server/store/postgres/connection.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';

let pg: Postgres;
let pool: Pool;
beforeAll(async () => {
  pg = await startPostgres({ auth: 'trust' });
  pool = openPool(pg.url(pg.createDatabase('statements')));
}, 60_000);
afterAll(async () => {
  await pool?.end();
  await pg?.stop();
});

it('publishes each statement with its connection, and its text without the parameters', async () => {
  const seen: Array<{ conn: number; text: string }> = [];
  const onStatement = (m: unknown): void => void seen.push(m as { conn: number; text: string });
  subscribe('sigil:postgres:statement', onStatement);
  try {
    await pool`SELECT ${'secret-parameter'}::text AS a`;
    await pool.begin(async (tx) => {
      await tx`SELECT 1`;
      await tx`SELECT 2`;
    });
  } finally {
    unsubscribe('sigil:postgres:statement', onStatement);
  }
  const texts = seen.map((s) => s.text.replace(/\s+/g, ' ').trim());
  expect(texts[0]).toBe('SELECT $1::text AS a');
  expect(texts).toContain('SELECT 1');
  expect(texts).toContain('SELECT 2');
  expect(JSON.stringify(seen)).not.toContain('secret-parameter');
  // The transaction's statements share one connection.
  const inTx = seen.filter((s) => /^SELECT [12]$/.test(s.text.trim()));
  expect(new Set(inTx.map((s) => s.conn)).size).toBe(1);
  expect(typeof inTx[0]!.conn).toBe('number');
});
