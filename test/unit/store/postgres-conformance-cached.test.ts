/**
 * The store conformance suite, unchanged, on PostgreSQL with the issuer's policy cache on (the
 * LISTEN/NOTIFY change feed live, store/postgres/policy-cache.ts): caching policy and bot locks
 * must not change what the contract promises (read-your-writes, rollback leaves nothing, …).
 */
import postgres from 'postgres';
import { afterAll, beforeAll } from 'vitest';
import { openPostgresStores } from '../../../src/server/store/postgres/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { storeConformance } from './conformance/index.js';

let pg: Postgres;
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

storeConformance('postgres, policy cached', async () => {
  const db = `conf_${++n}`;
  await admin.unsafe(`CREATE DATABASE ${db} TEMPLATE conf_template`);
  const stores = openPostgresStores(pg.url(db), { changeFeed: true });
  await stores.ready;
  // The cache is used only while the feed is live: wait for it, or the suite would test the uncached path.
  while (!stores.changes!.live) await new Promise((r) => setTimeout(r, 5));
  return { stores, dispose: () => stores.close() };
});
