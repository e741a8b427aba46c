/**
 * The store conformance suite, unchanged, on the PostgreSQL backend: one real PostgreSQL for the
 * file (test/helpers/postgres.ts, password auth over loopback) and a fresh database per case,
 * copied from a template the backend migrated once (CREATE DATABASE … TEMPLATE: a file copy,
 * much faster than running the migrations again per case). It runs twice: as is, and with the
 * issuer's policy cache on (the LISTEN/NOTIFY change feed live, store/postgres/policy-cache.ts),
 * since caching policy and bot locks must not change what the contract promises.
 */
import postgres from 'postgres';
import { afterAll, beforeAll } from 'vitest';
import { openPostgresStores } from '../../../src/server/store/postgres/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { storeConformance } from './conformance/index.js';

let pg: Postgres;
/** One connection to the server's `postgres` database for CREATE DATABASE (faster than a psql per case). */
let admin: postgres.Sql;
let n = 0;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  const template = openPostgresStores(pg.url(pg.createDatabase('conf_template')));
  await template.ready;
  await template.close();
  admin = postgres(pg.url(), { max: 1, onnotice: () => undefined });
}, 60_000);

afterAll(async () => {
  await admin?.end();
  await pg?.stop();
});

/** A fresh database per case; dropped with the server at the end (a DROP per case would only cost time). */
async function freshStores(changeFeed: boolean) {
  const db = `conf_${++n}`;
  await admin.unsafe(`CREATE DATABASE ${db} TEMPLATE conf_template`);
  const stores = openPostgresStores(pg.url(db), changeFeed ? { changeFeed: true } : undefined);
  await stores.ready;
  return stores;
}

storeConformance('postgres', async () => {
  const stores = await freshStores(false);
  return { stores, dispose: () => stores.close() };
});

storeConformance('postgres, policy cached', async () => {
  const stores = await freshStores(true);
  // The cache is used only while the feed is live: wait for it, or the suite would test the uncached path.
  while (!stores.changes!.live) await new Promise((r) => setTimeout(r, 5));
  return { stores, dispose: () => stores.close() };
});
