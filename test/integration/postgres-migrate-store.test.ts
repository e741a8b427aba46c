/**
 * `migrate-store`'s table copier on the records the e2e test does not make: registered devices
 * (identity ids continue after the move), a challenge's binary nonce, key bindings, the token
 * replay cache, bot locks, and an audit chain pruned through an anchor (verification starts after
 * the anchor in PostgreSQL too). And its refusals, each leaving the target empty: a SQLite table it
 * does not know, and a target that holds any row.
 */
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateStore } from '../../src/cli/migrate-store.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { initDataDir, openIssuerStores, paths } from '../../src/server/data-dir.js';
import { openPostgresIssuerStores } from '../../src/server/data-dir-store.js';
import type { Stores } from '../../src/server/store/types.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';

const NOW = 1_700_000_000_000;
const fp = (c: string): string => `sha256:${c.repeat(64)}`;

describe('migrate-store copies every kind of record, and refuses what it cannot move', () => {
  let pg: Postgres;
  let tmp: string;
  let dir: string;
  let pristine: string;

  beforeAll(async () => {
    pg = await startPostgres({ auth: 'password' });
    tmp = mkdtempSync(join(tmpdir(), 'sigil-pg-copy-'));
    dir = join(tmp, 'issuer');
    initDataDir(dir, 'example.org');
    const s = openIssuerStores(dir);
    try {
      await s.devices.put({
        rule: 'factory',
        serial: 'SN-1',
        ekPublicHash: fp('e'),
        idevidFingerprint: fp('1'),
        manifest: { serial: 'SN-1' },
        importedAt: NOW,
      });
      await s.devices.put({
        rule: null,
        serial: 'SN-2',
        ekPublicHash: null,
        idevidFingerprint: fp('2'),
        manifest: { serial: 'SN-2' },
        importedAt: NOW,
      });
      await s.challenges.create({
        id: 'ch-1',
        method: 'x509',
        requestId: 'req-1',
        spkiHash: fp('a'),
        nonce: Buffer.from([0, 1, 2, 255, 0x80, 0]),
        state: { chain: ['x'] },
        createdAt: NOW,
        expiresAt: NOW + 60_000,
      });
      await s.keyBindings.bind({
        method: 'aws_iid',
        subject: 'i-0abc',
        keyHash: fp('b'),
        rule: 'aws',
        facts: { account: '1' },
        createdAt: NOW,
      });
      expect(await s.tokenReplay.record('https://idp', 'jti-1', NOW + 3_600_000, NOW)).toBe(true);
      await s.botLocks.setLocked('gw', true, 'compromised', NOW);
      for (let i = 0; i < 4; i++) await s.audit.append({ action: 'note', outcome: 'ok', details: { i } }, NOW + i);
      expect(await s.audit.pruneThrough(3, JSON.stringify({ seq: 3 }), NOW + 10)).toBe(3);
    } finally {
      await s.close();
    }
    // A copy taken before any move, for the refusals.
    pristine = join(tmp, 'pristine');
    cpSync(dir, pristine, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await pg?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const copyOf = (name: string): string => {
    const d = join(tmp, name);
    cpSync(pristine, d, { recursive: true });
    chmodSync(d, 0o700);
    return d;
  };
  const rows = (db: string, table: string): number => Number(pg.admin(`SELECT count(*) FROM ${table}`, db).trim());

  it('moves devices, challenges, bindings, replay records, locks and a pruned chain; ids continue', async () => {
    const sqlite = openIssuerStores(pristine);
    const before = {
      devices: await sqlite.devices.list(),
      challenge: await sqlite.challenges.get('ch-1'),
      binding: await sqlite.keyBindings.get('aws_iid', 'i-0abc'),
      locks: await sqlite.botLocks.listLocked(),
      anchor: await sqlite.audit.anchor(),
      audit: await sqlite.audit.list(),
    };
    await sqlite.close();

    const url = pg.url(pg.createDatabase('moved'));
    const r = await migrateStore(dir, url);
    expect(r.rows).toMatchObject({
      devices: 2,
      join_challenges: 1,
      join_key_bindings: 1,
      token_replay: 1,
      bot_locks: 1,
    });
    expect(r.rows['audit_log']).toBe(before.audit.length);
    expect(r.auditVerified).toBe(before.audit.length);
    expect(JSON.parse(readFileSync(paths(dir).meta, 'utf8'))).toMatchObject({ store: 'postgres' });

    const moved: Stores = openPostgresIssuerStores(url, readAuditKey(paths(dir).auditKey));
    try {
      expect(await moved.devices.list()).toEqual(before.devices);
      expect(await moved.challenges.get('ch-1')).toEqual(before.challenge);
      expect((await moved.challenges.get('ch-1'))!.nonce.equals(Buffer.from([0, 1, 2, 255, 0x80, 0]))).toBe(true);
      expect(await moved.keyBindings.get('aws_iid', 'i-0abc')).toEqual(before.binding);
      expect(await moved.botLocks.listLocked()).toEqual(before.locks);
      expect(await moved.botLocks.isLocked('gw')).toBe(true);
      // The replay cache came along: the token used before the move is still a replay after it.
      expect(await moved.tokenReplay.record('https://idp', 'jti-1', NOW + 3_600_000, NOW + 1)).toBe(false);
      expect(await moved.audit.anchor()).toEqual(before.anchor);
      expect(await moved.audit.list()).toEqual(before.audit);
      expect(await moved.audit.verify()).toEqual({ ok: true, rows: before.audit.length });
      // The identity column continues after the copied ids.
      await moved.devices.put({
        rule: null,
        serial: 'SN-3',
        ekPublicHash: null,
        idevidFingerprint: fp('3'),
        manifest: { serial: 'SN-3' },
        importedAt: NOW,
      });
      expect((await moved.devices.getByFingerprint(fp('3')))!.id).toBe(
        Math.max(...before.devices.map((d) => d.id)) + 1,
      );
      // And the chain continues from the moved head, keyed.
      expect((await moved.audit.append({ action: 'after', outcome: 'ok' }, NOW + 20)).seq).toBe(
        before.audit[before.audit.length - 1]!.seq + 1,
      );
      expect(await moved.audit.verify()).toMatchObject({ ok: true });
    } finally {
      await moved.close();
    }
  });

  it('refuses a SQLite table it does not know how to move, leaving the target empty', async () => {
    const d = copyOf('unknown-table');
    const db = new Database(paths(d).db);
    db.exec('CREATE TABLE plugin_state (k TEXT PRIMARY KEY, v TEXT) STRICT');
    db.close();
    const name = pg.createDatabase('unknown_table');
    await expect(migrateStore(d, pg.url(name))).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('plugin_state'),
    });
    expect(JSON.parse(readFileSync(paths(d).meta, 'utf8')).store).toBeUndefined();
  });

  it('refuses a target that holds any row (a planted bot), writing nothing', async () => {
    const name = pg.createDatabase('planted');
    // Someone prepared the database: schema from a first issuer open, then one row of their own.
    const planted = openPostgresIssuerStores(pg.url(name), readAuditKey(paths(pristine).auditKey));
    // PostgresStores' `ready` (the Stores contract does not name it).
    await (planted as typeof planted & { ready: Promise<void> }).ready.catch(() => undefined); // not claimed: refused, but migrated
    await planted.close();
    pg.admin(
      `INSERT INTO resources (kind, name, spec, created_at, updated_at) VALUES ('bot', 'evil', '{}', 1, 1)`,
      name,
    );
    const d = copyOf('planted-source');
    await expect(migrateStore(d, pg.url(name))).rejects.toMatchObject({
      code: 'already_initialized',
      message: expect.stringContaining('resources'),
    });
    expect(rows(name, 'audit_log')).toBe(0);
    expect(rows(name, 'settings')).toBe(0);
    expect(rows(name, 'resources')).toBe(1);
    expect(JSON.parse(readFileSync(paths(d).meta, 'utf8')).store).toBeUndefined();
  });
});
