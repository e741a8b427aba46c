/**
 * The fleet seeder (bench/lib/seed-fleet.ts) that the fleet benches and the fleet view's browser
 * tests build on: what it writes must look to the store like what the issuer writes — states the
 * read model agrees with, and an audit chain that still verifies with the issuer's key.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresStores } from '../../../src/server/store/postgres/index.js';
import { openSqliteStores } from '../../../src/server/store/sqlite/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { seedFleet } from '../../../bench/lib/seed-fleet.js';
import { tempDir } from './helpers.js';

const NOW = Date.UTC(2026, 11, 5, 6, 0, 0);

describe('seedFleet on SQLite', () => {
  const dirs: Array<{ remove(): void }> = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) d.remove();
  });

  it('writes instances, certificates and a keyed audit chain that verifies, continuing an existing one', async () => {
    const t = tempDir();
    dirs.push(t);
    const key = { secret: randomBytes(32), fromSeq: 3, id: 'k1' };
    // An issuer's own rows first (two before the key's fromSeq, one after).
    const before = openSqliteStores(t.dbPath, { audit: { key } });
    for (let i = 0; i < 3; i++) await before.audit.append({ action: 'init', outcome: 'ok' }, NOW - 10_000 + i);
    await before.close();

    const r = await seedFleet({ sqlite: t.dbPath }, { instances: 400, auditRows: 900, now: NOW, auditKey: key });
    expect(r).toMatchObject({ instances: 400, certificates: 400, auditRows: 900 });
    const again = await seedFleet(
      { sqlite: t.dbPath },
      { instances: 100, auditRows: 50, now: NOW, auditKey: key, seed: 2 },
    );
    expect(again.auditRows).toBe(50);

    const stores = openSqliteStores(t.dbPath, { audit: { key } });
    try {
      expect(await stores.audit.verify()).toEqual({ ok: true, rows: 3 + 900 + 50 });
      const counts = await stores.fleet.counts(NOW);
      expect(counts.total).toBe(500);
      for (const state of ['healthy', 'locked', 'expired', 'renewal_overdue', 'attestation_failed'] as const)
        expect(counts[state], state).toBeGreaterThan(0);
      // The samples are in the states they are named for, as the read model decides them.
      for (const [state, id] of Object.entries(r.samples)) {
        const { rows } = await stores.fleet.page({ now: NOW, search: id });
        expect(rows[0]!.states, `${state} ${id}`).toContain(state);
      }
      // Each instance's current certificate is in the certificates table.
      const { rows } = await stores.fleet.page({ now: NOW, limit: 3 });
      for (const row of rows) expect((await stores.certificates.get(row.currentSerial!))?.instanceId).toBe(row.id);
    } finally {
      await stores.close();
    }
  });
});

describe('seedFleet on PostgreSQL', () => {
  let pg: Postgres;
  beforeAll(async () => {
    pg = await startPostgres({ auth: 'password' });
  }, 60_000);
  afterAll(() => pg?.stop());

  it('COPYs the same fleet; the chain verifies with the key; the read model sees the states', async () => {
    const url = pg.url(pg.createDatabase('seed'));
    const key = { secret: randomBytes(32), fromSeq: 1, id: 'k1' };
    const r = await seedFleet({ postgres: url }, { instances: 400, auditRows: 900, now: NOW, auditKey: key });
    await seedFleet({ postgres: url }, { instances: 100, auditRows: 50, now: NOW, auditKey: key, seed: 2 });
    const stores = openPostgresStores(url, { audit: { key } });
    try {
      expect(await stores.audit.verify()).toEqual({ ok: true, rows: 950 });
      expect((await stores.fleet.counts(NOW)).total).toBe(500);
      for (const [state, id] of Object.entries(r.samples)) {
        const { rows } = await stores.fleet.page({ now: NOW, search: id });
        expect(rows[0]!.states, `${state} ${id}`).toContain(state);
      }
    } finally {
      await stores.close();
    }
  });
});
