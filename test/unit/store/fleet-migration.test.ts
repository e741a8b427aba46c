/**
 * The fleet view's migrations (SQLite 7, PostgreSQL 2) on a database that already holds
 * instances: the two state columns are filled in from the rows written before them
 * (current_not_before from the current certificate, attestation_ok from facts.attestation.ok
 * when it is a boolean), so an upgraded issuer's fleet page is right from its first request.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS, migrate } from '../../../src/server/store/sqlite/migrations.js';
import { PG_MIGRATIONS, migratePostgres } from '../../../src/server/store/postgres/migrations.js';
import { openPool } from '../../../src/server/store/postgres/connection.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';

const T = 1_700_000_000_000;
/** id, facts, current serial (or null), its certificate's notBefore. */
const ROWS: Array<[string, string, string | null, number]> = [
  ['failed', '{"attestation":{"at":1,"ok":false}}', 'aa01', T - 5000],
  ['passed', '{"attestation":{"ok":true}}', 'aa02', T - 7000],
  ['string', '{"attestation":{"ok":"false"}}', 'aa03', T - 9000],
  ['never', '{"token_hash_prefix":"abc"}', null, 0],
];
const WANT = [
  { id: 'failed', current_not_before: T - 5000, attestation_ok: false },
  { id: 'never', current_not_before: null, attestation_ok: null },
  { id: 'passed', current_not_before: T - 7000, attestation_ok: true },
  { id: 'string', current_not_before: T - 9000, attestation_ok: null },
];

function insertSql(boolTrue: string, boolFalse: string): string[] {
  const out: string[] = [];
  for (const [id, facts, serial, nb] of ROWS) {
    out.push(
      `INSERT INTO instances (id, bot, join_method, spiffe_id, generation, locked, facts, key_storage, exportable,
         created_at, updated_at, last_seen_at, current_serial, current_not_after)
       VALUES ('${id}', 'edge', 'tpm', 'spiffe://x/${id}', 1, ${boolFalse}, '${facts}', 'tpm', ${boolTrue}, ${T}, ${T}, ${T},
         ${serial ? `'${serial}'` : 'NULL'}, ${serial ? T + 60_000 : 'NULL'})`,
    );
    if (serial)
      out.push(
        `INSERT INTO certificates (serial, instance_id, bot, generation, not_before, not_after, kind, key_storage,
           exportable, spki_hash, request_id, issued_at)
         VALUES ('${serial}', '${id}', 'edge', 1, ${nb}, ${T + 60_000}, 'x509-svid', 'tpm', ${boolTrue}, 'sha256:00', 'r-${id}', ${T})`,
      );
  }
  return out;
}

describe('fleet migration fills the state columns of existing instances', () => {
  it('SQLite migration 7', () => {
    const db = new Database(':memory:');
    try {
      migrate(db, MIGRATIONS.slice(0, 6));
      for (const s of insertSql('1', '0')) db.exec(s);
      migrate(db);
      const rows = db
        .prepare('SELECT id, current_not_before, attestation_ok FROM instances ORDER BY id')
        .all() as Array<{ id: string; current_not_before: number | null; attestation_ok: 0 | 1 | null }>;
      expect(
        rows.map((r) => ({ ...r, attestation_ok: r.attestation_ok === null ? null : r.attestation_ok === 1 })),
      ).toEqual(WANT);
    } finally {
      db.close();
    }
  });

  describe('PostgreSQL migration 2', () => {
    let pg: Postgres;
    beforeAll(async () => {
      pg = await startPostgres({ auth: 'password' });
    }, 60_000);
    afterAll(() => pg?.stop());

    it('fills both columns', async () => {
      const pool = openPool(pg.url(pg.createDatabase('fleet_mig')), { max: 1 });
      try {
        await migratePostgres(pool, PG_MIGRATIONS.slice(0, 1));
        for (const s of insertSql('true', 'false')) await pool.unsafe(s);
        await migratePostgres(pool);
        const rows = await pool.unsafe(
          'SELECT id, current_not_before, attestation_ok FROM instances ORDER BY id COLLATE "C"',
        );
        expect([...rows]).toEqual(WANT);
      } finally {
        await pool.end({ timeout: 5 });
      }
    });
  });
});
