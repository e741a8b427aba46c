/**
 * The store conformance suite, unchanged, on the PostgreSQL backend: one real PostgreSQL for the
 * file (test/helpers/postgres.ts, password auth over loopback) and a fresh database per case,
 * copied from a template the backend migrated once (CREATE DATABASE … TEMPLATE: a file copy,
 * much faster than running the migrations again per case).
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

storeConformance('postgres', async () => {
  const db = `conf_${++n}`;
  await admin.unsafe(`CREATE DATABASE ${db} TEMPLATE conf_template`);
  const stores = openPostgresStores(pg.url(db));
  await stores.ready;
  // Dropped with the server at the end: a DROP per case would only cost time.
  return { stores, dispose: () => stores.close() };
});
