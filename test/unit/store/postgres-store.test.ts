/**
 * The PostgreSQL backend beyond the shared conformance suite: migrations run once when several
 * issuers open a new database at once, the append-only protections of the audit chain and what
 * detects their removal, connection loss as `store_unavailable`, and URL redaction.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../../src/errors.js';
import {
  latestPgVersion,
  openPostgresStores,
  redactStoreUrl,
  type PostgresStores,
} from '../../../src/server/store/postgres/index.js';
import { checkStoreMatches, storeKind } from '../../../src/server/data-dir-store.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let pg: Postgres;
let admin: postgres.Sql;
let n = 0;

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  admin = postgres(pg.url(), { max: 1, onnotice: () => undefined });
}, 60_000);

afterAll(async () => {
  await admin?.end();
  await pg?.stop();
});

async function freshDb(): Promise<string> {
  const name = `t_${++n}`;
  await admin.unsafe(`CREATE DATABASE ${name}`);
  return name;
}

describe('migrations', () => {
  it('five issuers opening one new database at once migrate it once', async () => {
    const db = await freshDb();
    const all = Array.from({ length: 5 }, () => openPostgresStores(pg.url(db)));
    try {
      await Promise.all(all.map((s) => s.ready));
      const sql = postgres(pg.url(db), { max: 1 });
      const rows = await sql<{ version: number }[]>`SELECT version FROM schema_migrations ORDER BY version`;
      await sql.end();
      expect(rows.map((r) => r.version)).toEqual(Array.from({ length: latestPgVersion() }, (_, i) => i + 1));
      // And each of them works on the one schema.
      await Promise.all(all.map((s, i) => s.audit.append({ action: 'start', outcome: 'ok', details: { i } }, i)));
      expect(await all[0]!.audit.verify()).toEqual({ ok: true, rows: 5 });
    } finally {
      await Promise.all(all.map((s) => s.close()));
    }
  });
});

describe('the audit chain on PostgreSQL', () => {
  let s: PostgresStores;
  let sql: postgres.Sql;
  beforeAll(async () => {
    const db = await freshDb();
    s = openPostgresStores(pg.url(db));
    await s.ready;
    for (let i = 0; i < 3; i++) await s.audit.append({ action: 'issue', outcome: 'ok', details: { i } }, 1000 + i);
    sql = postgres(pg.url(db), { max: 1, onnotice: () => undefined });
  });
  afterAll(async () => {
    await sql?.end();
    await s?.close();
  });

  it('refuses UPDATE, DELETE and TRUNCATE of audit rows (append-only triggers)', async () => {
    await expect(sql`UPDATE audit_log SET outcome = 'refused' WHERE seq = 2`).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM audit_log WHERE seq = 3`).rejects.toThrow(/append-only/);
    await expect(sql`TRUNCATE audit_log`).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM audit_anchor`).resolves.toBeDefined(); // no rows: nothing to refuse
    expect(await s.audit.triggers()).toMatchObject({ missing: [] });
    expect(await s.audit.verify()).toEqual({ ok: true, rows: 3 });
  });

  it('reports a disabled or dropped trigger, and verify() finds the row edited behind it', async () => {
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update`;
    expect((await s.audit.triggers()).missing).toEqual(['audit_log_no_update']);
    await sql`UPDATE audit_log SET outcome = 'refused' WHERE seq = 2`;
    expect(await s.audit.verify()).toMatchObject({ ok: false, brokenAt: 2, reason: 'hash mismatch' });
    await sql`UPDATE audit_log SET outcome = 'ok' WHERE seq = 2`;
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update`;
    expect(await s.audit.verify()).toEqual({ ok: true, rows: 3 });
  });

  it('prunes through an anchor, refuses deletes above it, and continues the chain from it', async () => {
    expect(await s.audit.pruneThrough(2, JSON.stringify({ seq: 2 }), 2000)).toBe(2);
    expect(await s.audit.anchor()).toMatchObject({ seq: 2, pruned: 2, checkpoint: { seq: 2 } });
    await expect(sql`DELETE FROM audit_log WHERE seq = 3`).rejects.toThrow(/append-only/);
    expect((await s.audit.append({ action: 'after', outcome: 'ok' }, 3000)).seq).toBe(4);
    expect(await s.audit.verify()).toEqual({ ok: true, rows: 2 });
  });

  it('an audit row sent without waiting (inside withWriteTx) that fails fails the transaction with its own error', async () => {
    await sql.unsafe(`
      CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.action = 'boom' THEN RAISE EXCEPTION 'boom refused' USING ERRCODE = 'check_violation'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_boom BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_boom();`);
    const head = (await s.audit.head())!.seq;
    const token = (h: string) => ({ hash: h, bot: 'gw', createdAt: 1, expiresAt: 9e12 });
    // The failing row is the transaction's last statement: the COMMIT answers ROLLBACK; the cause is reported.
    await expect(
      s.withWriteTx(async (tx) => {
        await tx.tokens.create(token('a'.repeat(64)));
        await tx.audit.append({ action: 'boom', outcome: 'ok' }, 5000);
        return 'committed';
      }),
    ).rejects.toMatchObject({ code: '23514', message: expect.stringMatching(/boom refused/) });
    // A statement follows it: that one fails too (the transaction is aborted), the cause is still the row's.
    await expect(
      s.withWriteTx(async (tx) => {
        await tx.audit.append({ action: 'boom', outcome: 'ok' }, 5000);
        await tx.tokens.create(token('b'.repeat(64)));
        return 'committed';
      }),
    ).rejects.toMatchObject({ code: '23514' });
    expect(await s.tokens.get('a'.repeat(64))).toBeUndefined();
    expect(await s.tokens.get('b'.repeat(64))).toBeUndefined();
    expect((await s.audit.head())!.seq).toBe(head);
    await sql.unsafe('DROP TRIGGER refuse_boom ON audit_log');
    // Appended inside a transaction and committed: the row is there and the chain verifies.
    await s.withWriteTx(async (tx) => tx.audit.append({ action: 'fine', outcome: 'ok' }, 6000));
    expect((await s.audit.head())!.seq).toBe(head + 1);
    expect(await s.audit.verify()).toMatchObject({ ok: true });
  });

  it('a certificate or stored answer sent without waiting that collides fails the transaction, leaving nothing', async () => {
    const now = 7000;
    await s.instances.create({
      id: 'inst-w',
      bot: 'gw',
      joinMethod: 'token',
      spiffeId: 'spiffe://example.org/bot/gw/inst-w',
      generation: 1,
      facts: {},
      keyStorage: 'software',
      exportable: true,
      createdAt: now,
    });
    const cert = (serial: string) => ({
      serial,
      instanceId: 'inst-w',
      bot: 'gw',
      generation: 1,
      notBefore: now,
      notAfter: now + 1,
      kind: 'x509-svid',
      keyStorage: 'software' as const,
      exportable: true,
      spkiHash: 'sha256:00',
      requestId: `req-${serial}`,
      issuedAt: now,
    });
    await s.certificates.insert(cert('0c'));
    const answer = {
      requestId: 'req-w',
      requestHash: 'h',
      signer: 's',
      op: 'renew',
      response: 'first',
      createdAt: now,
    };
    await s.idempotency.put(answer);
    const head = (await s.audit.head())!.seq;
    // The colliding certificate is followed by more statements (they fail on the aborted transaction).
    await expect(
      s.withWriteTx(async (tx) => {
        await tx.certificates.insert(cert('0d'));
        await tx.certificates.insert(cert('0c'));
        await tx.idempotency.put({ ...answer, requestId: 'req-w2' });
        await tx.audit.append({ action: 'renew', outcome: 'ok' }, now);
        return 'committed';
      }),
    ).rejects.toMatchObject({ code: '23505' });
    // The colliding stored answer is the transaction's last write before COMMIT.
    await expect(
      s.withWriteTx(async (tx) => {
        await tx.certificates.insert(cert('0e'));
        await tx.idempotency.put({ ...answer, response: 'second' });
        return 'committed';
      }),
    ).rejects.toMatchObject({ code: '23505' });
    for (const serial of ['0d', '0e']) expect(await s.certificates.get(serial)).toBeUndefined();
    expect(await s.idempotency.get('req-w2')).toBeUndefined();
    expect((await s.idempotency.get('req-w'))!.response).toBe('first');
    expect((await s.audit.head())!.seq).toBe(head);
  });
});

/**
 * The conformance suite's races, on a pool whose 20 connections are already open: a new pool
 * connects one connection at a time, and the first transaction may commit before the second has
 * a connection, so the suite alone does not prove the locks on PostgreSQL. Each transaction here
 * reads, waits until every other one has started too (or 50 ms, when a lock keeps them out),
 * then writes.
 */
describe('read-then-write races on a warm pool', () => {
  const N = 20;
  let s: PostgresStores;
  beforeAll(async () => {
    s = openPostgresStores(pg.url(await freshDb()), { max: N });
    await s.ready;
    await Promise.all(
      Array.from({ length: N }, () => s.withWriteTx(async (t) => (await t.tokens.get('warm'), sleep(100)))),
    );
  });
  afterAll(() => s?.close());

  /** Resolves when all `n` arrived, or after `ms`: whichever is first (a lock may hold the others back). */
  function barrier(n: number, ms: number): () => Promise<void> {
    let arrived = 0;
    let release!: () => void;
    const all = new Promise<void>((r) => (release = r));
    return () => {
      if (++arrived === n) release();
      return Promise.race([all, sleep(ms)]);
    };
  }
  const times = <T>(f: (i: number) => Promise<T>): Promise<T[]> =>
    Promise.all(Array.from({ length: N }, (_, i) => f(i)));

  it('idempotency get → put: one answer stored, every transaction returns it', async () => {
    const wait = barrier(N, 50);
    const answers = await times((i) =>
      s.withWriteTx(async (tx) => {
        const stored = await tx.idempotency.get('race-req');
        await wait();
        if (stored) return stored.response;
        const response = `{"n":${i}}`;
        await tx.idempotency.put({
          requestId: 'race-req',
          requestHash: 'h',
          signer: 's',
          op: 'renew',
          response,
          createdAt: 1,
        });
        return response;
      }),
    );
    expect(new Set(answers).size).toBe(1);
  });

  it('generation check → recordIssue: exactly one advances it', async () => {
    await s.instances.create({
      id: 'race-i',
      bot: 'edge',
      joinMethod: 'token',
      spiffeId: 'spiffe://x/i',
      generation: 1,
      facts: {},
      keyStorage: 'software',
      exportable: true,
      createdAt: 1,
    });
    const wait = barrier(N, 50);
    const outcomes = await times((i) =>
      s.withWriteTx(async (tx) => {
        const fresh = (await tx.instances.get('race-i'))!;
        await wait();
        if (fresh.generation !== 1) return 'generation_mismatch';
        await tx.instances.recordIssue('race-i', {
          generation: 2,
          serial: (0x100 + i).toString(16),
          notAfter: 2,
          keyStorage: 'software',
          exportable: true,
          now: 2,
        });
        return 'ok';
      }),
    );
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(1);
  });

  it('a deadlock between two transactions: PostgreSQL aborts one (40P01), the store runs it again, both commit', async () => {
    for (const id of ['dl-1', 'dl-2'])
      await s.instances.create({
        id,
        bot: 'edge',
        joinMethod: 'token',
        spiffeId: `spiffe://x/${id}`,
        generation: 1,
        facts: {},
        keyStorage: 'software',
        exportable: true,
        createdAt: 1,
      });
    const both = barrier(2, 5000);
    let runs = 0;
    const crossing = (first: string, second: string) =>
      s.withWriteTx(async (tx) => {
        runs++;
        await tx.instances.get(first); // FOR UPDATE: row lock on `first`
        await both();
        await tx.instances.get(second); // waits for the other transaction: a cycle
        return tx.instances.setLocked(first, true, 'test', 2);
      });
    expect(await Promise.all([crossing('dl-1', 'dl-2'), crossing('dl-2', 'dl-1')])).toEqual([true, true]);
    expect(runs).toBe(3);
  });

  it('audit appends: one chain', async () => {
    const wait = barrier(N, 50);
    await times((i) =>
      s.withWriteTx(async (tx) => {
        await wait();
        await tx.audit.append({ action: 'a', outcome: 'ok', details: { i } }, i);
        return tx.audit.append({ action: 'b', outcome: 'ok', details: { i } }, i);
      }),
    );
    expect(await s.audit.verify()).toMatchObject({ ok: true });
  });
});

describe('connection trouble', () => {
  it('a database that cannot be reached: store_unavailable (retryable), naming it without the password', async () => {
    const s = openPostgresStores(`postgres://sigil:hunter2secret@127.0.0.1:1/sigil`, { connectTimeoutS: 2 });
    const err = (await s.ready.catch((e: unknown) => e)) as SigilError;
    expect(err).toBeInstanceOf(SigilError);
    expect(err.code).toBe('store_unavailable');
    expect(err.message).toContain('postgres://sigil:***@127.0.0.1:1/sigil');
    expect(err.message).not.toContain('hunter2secret');
    await expect(s.tokens.get('x')).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(s.withWriteTx(async () => 1)).rejects.toMatchObject({ code: 'store_unavailable' });
    await s.close();
  });

  it('a wrong password or a missing database: config_invalid saying what to fix, without the password', async () => {
    const wrong = openPostgresStores(pg.url().replace(`:${pg.password}@`, ':not-the-password@'));
    const e1 = (await wrong.ready.catch((e: unknown) => e)) as SigilError;
    expect(e1).toMatchObject({ code: 'config_invalid' });
    expect(e1.message).toMatch(/refused the login \(28P01\)/);
    expect(e1.message).not.toContain('not-the-password');
    await wrong.close();
    const missing = openPostgresStores(pg.url('no_such_db'));
    expect(await missing.ready.catch((e: unknown) => e)).toMatchObject({
      code: 'config_invalid',
      message: expect.stringMatching(/does not exist/),
    });
    await missing.close();
  });

  it('connections killed under a running issuer: the open transaction fails as store_unavailable, leaves nothing, and the next call reconnects', async () => {
    const db = await freshDb();
    const s = openPostgresStores(pg.url(db), { applicationName: 'sigil-kill-me' });
    try {
      await s.ready;
      await s.tokens.create({ hash: 'h', bot: 'edge', createdAt: 1, expiresAt: Number.MAX_SAFE_INTEGER });
      const tx = s.withWriteTx(async (t) => {
        expect((await t.tokens.consume('h', 2, 'i1')).ok).toBe(true);
        await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sigil-kill-me'`;
        return t.tokens.get('h');
      });
      await expect(tx).rejects.toMatchObject({ code: 'store_unavailable' });
      // Nothing half-written: the token is still unused, and the pool connects again.
      expect((await s.tokens.get('h'))!.usedAt).toBeNull();
      expect((await s.tokens.consume('h', 3, 'i2')).ok).toBe(true);
    } finally {
      await s.close();
    }
  });
});

describe('which store a data directory uses', () => {
  it('refuses a --store that does not match what init recorded, and says so without the password', () => {
    expect(() => checkStoreMatches('sqlite', undefined, '/d')).not.toThrow();
    expect(() => checkStoreMatches('postgres', 'postgres://h/db', '/d')).not.toThrow();
    expect(() => checkStoreMatches('postgres', undefined, '/d')).toThrow(/set SIGIL_STORE=postgres:\/\/…/);
    const err = (() => {
      try {
        checkStoreMatches('sqlite', 'postgres://u:pw-secret@h/db', '/d');
      } catch (e) {
        return e as SigilError;
      }
      return undefined;
    })();
    expect(err).toMatchObject({ code: 'config_invalid' });
    expect(err!.message).toContain('empty database');
    expect(err!.message).not.toContain('pw-secret');
    expect(() => storeKind('mysql://h/db')).toThrow(/--store must be postgres/);
  });
});

describe('redactStoreUrl', () => {
  it.each([
    ['postgres://u:pw@h/db', 'postgres://u:***@h/db'],
    [
      'postgresql://u:p%40w@h1:5432,h2:5433/db?target_session_attrs=read-write',
      'postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write',
    ],
    ['postgres://u@h/db?sslmode=verify-full&password=pw', 'postgres://u@h/db?sslmode=verify-full&password=***'],
    ['postgres://h/db', 'postgres://h/db'],
  ])('%s', (url, redacted) => {
    expect(redactStoreUrl(url)).toBe(redacted);
  });
});
