/**
 * Change propagation between issuers (issue #15; store/postgres/change-feed.ts, policy-cache.ts),
 * two store instances (two issuers' pools + listeners) on one real PostgreSQL:
 * - B answers policy and bot-lock reads from memory (no statement sent) while its feed is live;
 * - a change committed through A reaches B within 1 s (measured, event-driven), a rolled-back one
 *   never does, and this issuer's own writes are visible to itself at once;
 * - a listener connection killed (pg_terminate_backend) or hung (SIGSTOP of its backend): B stops
 *   trusting its cache at once, reconnects and resyncs, and reads what changed meanwhile;
 * - a forged NOTIFY (any payload) only makes B re-read from the tables: no data is taken from it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHANGE_CHANNEL,
  openPostgresStores,
  type ChangeEvent,
  type PostgresStores,
} from '../../../src/server/store/postgres/index.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { instance } from './conformance/fixtures.js';

let pg: Postgres;
let a: PostgresStores;
let b: PostgresStores;
const bStatements: string[] = [];
const T0 = 1_700_000_000_000;

/** Resolves with the first event of B's feed that `match` accepts (subscribed before `act` runs). */
function nextEvent(match: (e: ChangeEvent) => boolean, timeoutMs = 5_000): Promise<ChangeEvent> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no change event on B')), timeoutMs);
    let done = false;
    b.changes!.subscribe((e) => {
      if (done || !match(e)) return;
      done = true;
      clearTimeout(t);
      resolve(e);
    });
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The pid of B's listener backend (its application_name). */
function bListenerPid(): number {
  const out = pg.admin("SELECT pid FROM pg_stat_activity WHERE application_name = 'issuer-b-listener'").trim();
  expect(out, 'B listens on its own connection').toMatch(/^\d+$/);
  return Number(out);
}

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  const url = pg.url(pg.createDatabase('changes'));
  const feed = { heartbeatMs: 200, heartbeatTimeoutMs: 300, backoffMs: 50 };
  a = openPostgresStores(url, { applicationName: 'issuer-a', changeFeed: feed });
  b = openPostgresStores(url, {
    applicationName: 'issuer-b',
    // B waits a second before reconnecting: the tests below look at it while it is down.
    changeFeed: { ...feed, backoffMs: 1000 },
    onStatement: (text) => bStatements.push(text),
  });
  await Promise.all([a.ready, b.ready]);
  await until(() => a.changes!.live && b.changes!.live, 'both feeds live');
  const seen = nextEvent((e) => e === 'resources');
  await a.resources.put('role', 'r', { ttl: '1h' }, T0);
  await seen;
}, 60_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await pg?.stop();
});

describe('policy and bot locks cached, kept correct by LISTEN/NOTIFY', () => {
  it('B answers repeated reads from memory: no statement reaches the database', async () => {
    await b.resources.get('role', 'r');
    await b.botLocks.isLocked('gw');
    bStatements.length = 0;
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '1h' });
    expect(await b.botLocks.isLocked('gw')).toBe(false);
    expect(bStatements).toEqual([]);
    // Each caller gets its own object: a caller that mutates it cannot change what the next one reads.
    const one = await b.resources.get('role', 'r');
    one!.spec['ttl'] = 'tampered';
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '1h' });
  });

  it('a policy change committed on A reaches B within 1 s', async () => {
    await b.resources.get('role', 'r');
    const seen = nextEvent((e) => e === 'resources');
    const t0 = performance.now();
    expect(await a.resources.put('role', 'r', { ttl: '10m' }, T0 + 1)).toBe('updated');
    await seen;
    const ms = performance.now() - t0;
    process.stdout.write(`policy change A → B's cache: ${ms.toFixed(1)} ms\n`);
    expect(ms).toBeLessThan(1000);
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '10m' });
  });

  it('a bot lock on A refuses on B within 1 s; the unlock too', async () => {
    expect(await b.botLocks.isLocked('gw')).toBe(false);
    let seen = nextEvent((e) => e === 'bot_locks');
    const t0 = performance.now();
    await a.botLocks.setLocked('gw', true, 'stolen', T0);
    await seen;
    const ms = performance.now() - t0;
    process.stdout.write(`bot lock A → B's cache: ${ms.toFixed(1)} ms\n`);
    expect(ms).toBeLessThan(1000);
    expect(await b.botLocks.isLocked('gw')).toBe(true);
    seen = nextEvent((e) => e === 'bot_locks');
    await a.withWriteTx((tx) => tx.botLocks.setLocked('gw', false, null, T0));
    await seen;
    expect(await b.botLocks.isLocked('gw')).toBe(false);
  });

  it('an instance lock on A is announced to B (its CRL and events look at the audit log at once)', async () => {
    await a.instances.create(instance('i-1'));
    const seen = nextEvent((e) => e === 'instances');
    expect(await a.instances.setLocked('i-1', true, 'test', T0)).toBe(true);
    await seen;
  });

  it('a write that rolls back announces nothing (notifications are delivered at COMMIT only)', async () => {
    const events: ChangeEvent[] = [];
    b.changes!.subscribe((e) => events.push(e));
    await expect(
      a.withWriteTx(async (tx) => {
        await tx.resources.put('role', 'r', { ttl: '5m' }, T0 + 2);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    // A committed marker after it: notifications arrive in commit order, so once it is here
    // anything the rolled-back write had sent would be here too.
    const marker = nextEvent((e) => e === 'bot_locks');
    await a.botLocks.setLocked('marker', true, null, T0);
    await marker;
    expect(events).toEqual(['bot_locks']);
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '10m' });
  });

  it("this issuer's own committed write is read back at once, before any notification", async () => {
    await a.resources.get('role', 'r');
    await a.withWriteTx(async (tx) => {
      await tx.resources.put('role', 'r', { ttl: '20m' }, T0 + 3);
      // Inside the transaction its own write, not the cache.
      expect((await tx.resources.get('role', 'r'))?.spec).toEqual({ ttl: '20m' });
    });
    expect((await a.resources.get('role', 'r'))?.spec).toEqual({ ttl: '20m' });
    await a.resources.put('role', 'r', { ttl: '30m' }, T0 + 4);
    expect((await a.resources.get('role', 'r'))?.spec).toEqual({ ttl: '30m' });
  });
});

describe('the listener connection lost: no cache while down, full resync on reconnect', () => {
  it('killed with pg_terminate_backend: B reads from the database while down, and what changed meanwhile after', async () => {
    await b.resources.get('role', 'r');
    const connects = b.changes!.stats.connects;
    const lost = nextEvent((e) => e === 'all');
    pg.admin(`SELECT pg_terminate_backend(${bListenerPid()})`);
    await lost;
    // A change nobody told B about (the notification went to no listener of B's).
    await a.resources.put('role', 'r', { ttl: '40m' }, T0 + 5);
    // Not live: straight to the database, whatever the cache held.
    expect(b.changes!.live).toBe(false);
    bStatements.length = 0;
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '40m' });
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '40m' });
    expect(bStatements.length).toBe(2);
    await until(() => b.changes!.stats.connects > connects && b.changes!.live, 'B listening again');
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '40m' });
    // Live again: changes propagate as before.
    const seen = nextEvent((e) => e === 'resources');
    await a.resources.put('role', 'r', { ttl: '50m' }, T0 + 6);
    await seen;
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '50m' });
  });

  it('a listener that hangs without closing (SIGSTOP of its backend) is given up by the heartbeat and replaced', async () => {
    const pid = bListenerPid();
    const connects = b.changes!.stats.connects;
    const lost = nextEvent((e) => e === 'all');
    process.kill(pid, 'SIGSTOP');
    try {
      await lost;
      expect(b.changes!.live).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await until(() => b.changes!.stats.connects > connects && b.changes!.live, 'B listening again');
    expect(bListenerPid()).not.toBe(pid);
  });
});

describe('a forged notification', () => {
  it('carries no data: any payload only makes B re-read from the tables', async () => {
    await b.resources.get('role', 'r');
    const seen = nextEvent((e) => e === 'all');
    pg.admin(`NOTIFY ${CHANGE_CHANNEL}, '{"kind":"role","name":"r","spec":{"ttl":"24h"}}'`, 'changes');
    await seen;
    bStatements.length = 0;
    expect((await b.resources.get('role', 'r'))?.spec).toEqual({ ttl: '50m' });
    expect(bStatements.length).toBe(1);
  });
});
