/**
 * Appending to the audit chain on a head the issuer already knows (store/postgres/audit-tail.ts):
 * two issuers (two PostgresStores, each with its own knowledge of the head) on one database.
 * - An issuer that knows the head appends without reading it (no head read is sent; the check is).
 * - A guess made stale by the other issuer is caught by the check under the lock, the transaction
 *   runs again and appends after the other issuer's row: one valid chain, nothing lost, no fork.
 * - A rolled-back transaction leaves the known head as it was (its row never existed).
 * - Both issuers appending concurrently: one contiguous chain that verifies.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openPostgresStores, type PostgresStores } from '../../../src/server/store/postgres/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';

let pg: Postgres;
let a: PostgresStores;
let b: PostgresStores;
const sentByA: string[] = [];
const key = { id: 'k1', secret: randomBytes(32), fromSeq: 1 };
const T0 = 1_700_000_000_000;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  const url = pg.url(pg.createDatabase('tail'));
  a = openPostgresStores(url, { audit: { key }, onStatement: (s) => sentByA.push(s.replace(/\s+/g, ' ').trim()) });
  b = openPostgresStores(url, { audit: { key } });
  await a.ready;
  await b.ready;
}, 60_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await pg?.stop();
});

const appendIn = (s: PostgresStores, action: string) =>
  s.withWriteTx((tx) => tx.audit.append({ action, outcome: 'ok' }, T0));
const headReads = () => sentByA.filter((s) => s.startsWith('SELECT seq, hash FROM')).length;
const checks = () => sentByA.filter((s) => s.includes('head_unchanged')).length;

it('an issuer that knows the head appends without reading it; a stale guess is retried after the other issuer', async () => {
  await appendIn(a, 'a1'); // the head is not known yet: read
  sentByA.length = 0;
  await appendIn(a, 'a2'); // known: guessed, checked, not read
  expect(headReads()).toBe(0);
  expect(checks()).toBe(1);

  await appendIn(b, 'b1'); // the other issuer moves the head
  sentByA.length = 0;
  const rec = await appendIn(a, 'a3'); // A's guess (a2) is stale: the check fails, the transaction runs again
  expect(checks()).toBe(1);
  expect(headReads()).toBe(1);
  expect(rec.seq).toBe(4);

  const rows = await a.audit.list();
  expect(rows.map((r) => r.action)).toEqual(['a1', 'a2', 'b1', 'a3']);
  expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
  expect(await a.audit.verify()).toEqual({ ok: true, rows: 4 });
});

it('a transaction rolled back after its append leaves the known head as it was', async () => {
  // After the stale guess above, A reads the head for a while (cooldown); its rows are still its own.
  await expect(
    a.withWriteTx(async (tx) => {
      await tx.audit.append({ action: 'never', outcome: 'ok' }, T0);
      throw new Error('rolled back');
    }),
  ).rejects.toThrow('rolled back');
  const rec = await appendIn(a, 'a4');
  expect(rec.seq).toBe(5);
  expect((await a.audit.list()).map((r) => r.action)).toEqual(['a1', 'a2', 'b1', 'a3', 'a4']);
  expect(await a.audit.verify()).toEqual({ ok: true, rows: 5 });
});

it('both issuers appending at once: one contiguous chain that verifies', async () => {
  const before = (await a.audit.head())!.seq;
  await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => appendIn(a, `ca${i}`)),
    ...Array.from({ length: 20 }, (_, i) => appendIn(b, `cb${i}`)),
    ...Array.from({ length: 5 }, (_, i) => a.audit.append({ action: `oa${i}`, outcome: 'ok' }, T0)),
  ]);
  const rows = await a.audit.list();
  expect(rows.length).toBe(before + 45);
  expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: before + 45 }, (_, i) => i + 1));
  expect(await a.audit.verify()).toEqual({ ok: true, rows: before + 45 });
});

it('two appends in one transaction on a known head: adjacent rows, no wait on its own guess', async () => {
  await appendIn(b, 'b-settle'); // make A's next read learn the head …
  for (let i = 0; i < 101; i++) await appendIn(a, `warm${i}`); // … and let its cooldown run out
  sentByA.length = 0;
  const [r1, r2] = await a.withWriteTx(async (tx) => [
    await tx.audit.append({ action: 'pair-1', outcome: 'ok' }, T0),
    await tx.audit.append({ action: 'pair-2', outcome: 'ok' }, T0),
  ]);
  expect(checks()).toBe(1); // the first on the known head, the second reads it (its own row) under the lock
  expect(r2!.seq).toBe(r1!.seq + 1);
  expect(r2!.prevHash).toBe(r1!.hash);
  expect(await a.audit.verify()).toMatchObject({ ok: true });
});

it('one issuer, many transactions appending at once: none is run twice (its appends wait for its guess)', async () => {
  sentByA.length = 0;
  await Promise.all(Array.from({ length: 30 }, (_, i) => appendIn(a, `burst${i}`)));
  expect(sentByA.filter((s) => s === 'BEGIN').length).toBe(30);
  expect(checks()).toBeGreaterThan(0);
  expect(await a.audit.verify()).toMatchObject({ ok: true });
});
