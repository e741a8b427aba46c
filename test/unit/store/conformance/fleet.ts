/**
 * Conformance: the fleet read model (src/server/store/fleet-types.ts) — states at `now`, every
 * filter, every sort in both orders, paging, counts, the audit query, activity buckets, the
 * certificate age histogram and the refusals of bad input — checked against an oracle written
 * here from the header's definitions, not from the implementation.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Stores } from '../../../../src/server/store/types.js';
import type { FleetQuery, FleetRow, FleetSortKey, FleetState } from '../../../../src/server/store/fleet-types.js';
import { FLEET_STATES } from '../../../../src/server/store/fleet-types.js';
import { MIN, T0, cert, instance } from './fixtures.js';

const NOW = T0 + 100 * MIN;

/** What the oracle knows of each seeded instance. */
interface Model {
  id: string;
  bot: string;
  joinMethod: string;
  spiffeId: string;
  createdAt: number;
  lastSeenAt: number;
  generation: number;
  locked: boolean;
  notBefore: number | null;
  notAfter: number | null;
  attestationOk: boolean | null;
}

const BOTS = ['edge', 'core', 'gw'];
const METHODS = ['token', 'tpm', 'aws_iid', 'x509'];
/** Ids that test the search escaping: a literal %, a literal _, a quote, a backslash, upper case. */
const ODD_IDS = ['pct%50', 'under_score', "o'brien", 'back\\slash', 'UPPER-Case'];

function ids(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`i-${String(i).padStart(2, '0')}`);
  return [...out, ...ODD_IDS];
}

/** Seed a varied fleet through the contract's own write methods; returns the oracle's model. */
async function seedFleet(s: Stores): Promise<Model[]> {
  const models: Model[] = [];
  const all = ids(30);
  await s.withWriteTx(async (tx) => {
    for (const [i, id] of all.entries()) {
      const bot = BOTS[i % 3]!;
      const joinMethod = METHODS[i % 4]!;
      const createdAt = T0 + ((i * 7) % 30) * MIN;
      const spiffeId = `spiffe://example.org/bot/${bot}/${id}`;
      // i % 6 === 3: attested at join, failed (the create path writes the column too).
      const facts: Record<string, unknown> =
        i % 6 === 3 ? { attestation: { at: createdAt, ok: false, via: 'join' } } : { firmware_profile: `fw-${i % 2}` };
      if (i === 12) facts['attestation'] = { ok: 'false' }; // not a boolean: not attested
      await tx.instances.create(instance(id, { bot, joinMethod, spiffeId, createdAt, facts }));
      const m: Model = {
        id,
        bot,
        joinMethod,
        spiffeId,
        createdAt,
        lastSeenAt: createdAt,
        generation: 0,
        locked: false,
        notBefore: null,
        notAfter: null,
        attestationOk: i % 6 === 3 ? false : null,
      };
      // Certificates: expired, overdue, fresh, just short of / exactly at the overdue point (2/3 of
      // the lifetime from the issue, one minute after notBefore: [NOW-41, NOW+20] is due at NOW), none.
      const shape = i % 5;
      const window: Array<[number, number] | null> = [
        [NOW - 120 * MIN, NOW - 10 * MIN],
        [NOW - 50 * MIN, NOW + 20 * MIN],
        [NOW - 5 * MIN, NOW + 55 * MIN],
        i === 3 ? [NOW - 41 * MIN, NOW + 20 * MIN] : [NOW - 40 * MIN, NOW + 20 * MIN],
        null,
      ];
      const w = window[shape];
      if (w) {
        const generation = 1 + (i % 4);
        const seen = T0 + ((i * 11) % 30) * MIN + 1;
        // An older certificate first: only the current one counts.
        await tx.certificates.insert(cert(`0${i.toString(16)}`, id, { bot, notBefore: T0 - 500 * MIN, notAfter: T0 }));
        await tx.certificates.insert(
          cert(`a${i.toString(16)}`, id, { bot, generation, notBefore: w[0], notAfter: w[1] }),
        );
        await tx.instances.recordIssue(id, {
          generation,
          serial: `a${i.toString(16)}`,
          notAfter: w[1],
          keyStorage: 'software',
          exportable: true,
          now: seen,
        });
        Object.assign(m, { notBefore: w[0], notAfter: w[1], generation, lastSeenAt: seen });
      }
      models.push(m);
    }
  });
  // Later facts: a failed attestation, a passing one, one that failed and then passed.
  for (const [i, id] of all.entries()) {
    const m = models[i]!;
    if (i % 6 === 1) {
      await s.instances.updateFacts(id, { attestation: { at: NOW - MIN, ok: false, via: 'attest' } }, NOW - MIN);
      m.attestationOk = false;
    } else if (i % 6 === 2) {
      await s.instances.updateFacts(id, { attestation: { at: NOW - MIN, ok: true, via: 'attest' } }, NOW - MIN);
      m.attestationOk = true;
    }
    if (i === 9) {
      await s.instances.updateFacts(id, { attestation: { at: NOW, ok: true, via: 'attest' } }, NOW);
      m.attestationOk = true;
    }
    if (i % 7 === 0) {
      await s.instances.setLocked(id, true, `lost ${id}`, NOW - MIN);
      m.locked = true;
    }
  }
  return models;
}

/** The states of fleet-types.ts's header, written independently of the implementation. */
function oracleStates(m: Model, now: number): FleetState[] {
  const out: FleetState[] = [];
  const expired = m.notAfter !== null && m.notAfter <= now;
  if (m.locked) out.push('locked');
  if (expired) out.push('expired');
  if (!m.locked && !expired && m.notAfter !== null && m.notBefore !== null) {
    // Agents renew at (0.5 ± 10%) of the lifetime from the issue, notBefore + 1 min: overdue from 2/3.
    const issued = m.notBefore + MIN;
    const due = issued + ((m.notAfter - issued) * 2) / 3;
    if (due <= now) out.push('renewal_overdue');
  }
  if (m.attestationOk === false) out.push('attestation_failed');
  if (out.length === 0) out.push('healthy');
  return out;
}

function sortValue(m: Model, key: FleetSortKey): string | number | null {
  switch (key) {
    case 'id':
      return m.id;
    case 'bot':
      return m.bot;
    case 'join_method':
      return m.joinMethod;
    case 'last_seen':
      return m.lastSeenAt;
    case 'expires':
      return m.notAfter;
    case 'created':
      return m.createdAt;
    case 'generation':
      return m.generation;
  }
}

/** Byte order for text (as SQLite and PostgreSQL COLLATE "C"), NULL smallest, ties by id in the same direction. */
function oracleSort(models: Model[], key: FleetSortKey, order: 'asc' | 'desc'): string[] {
  const cmp = (a: string | number | null, b: string | number | null): number => {
    if (a === b) return 0;
    if (a === null) return -1;
    if (b === null) return 1;
    if (typeof a === 'string' && typeof b === 'string') return Buffer.compare(Buffer.from(a), Buffer.from(b));
    return (a as number) - (b as number);
  };
  const sign = order === 'asc' ? 1 : -1;
  return [...models]
    .sort((a, b) => sign * (cmp(sortValue(a, key), sortValue(b, key)) || cmp(a.id, b.id)))
    .map((m) => m.id);
}

async function badRequest(p: Promise<unknown>, field: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code: 'bad_request', message: expect.stringContaining(field) });
}

export function fleetSuite(stores: () => Stores): void {
  let s: Stores;
  beforeEach(() => {
    s = stores();
  });

  const page = (q: Omit<FleetQuery, 'now'> & { now?: number }) => s.fleet.page({ now: NOW, limit: 500, ...q });
  const idsOf = (rows: FleetRow[]) => rows.map((r) => r.id);

  describe('fleet read model', () => {
    it('an empty fleet: no rows, zero counts', async () => {
      expect(await s.fleet.page({ now: NOW })).toEqual({ rows: [], total: 0 });
      expect(await s.fleet.counts(NOW)).toEqual({
        total: 0,
        healthy: 0,
        locked: 0,
        expired: 0,
        renewal_overdue: 0,
        attestation_failed: 0,
      });
    });

    it('maps a row: identity, current certificate, attestation facts, states', async () => {
      await seedFleet(s);
      const { rows } = await page({ search: 'i-01' });
      // i = 1: bot core, tpm, overdue certificate (gen 2), attestation failed later; not locked.
      expect(rows).toEqual([
        {
          id: 'i-01',
          bot: 'core',
          joinMethod: 'tpm',
          spiffeId: 'spiffe://example.org/bot/core/i-01',
          generation: 2,
          keyStorage: 'software',
          exportable: true,
          locked: false,
          lockReason: null,
          currentSerial: 'a1',
          currentNotBefore: NOW - 50 * MIN,
          currentNotAfter: NOW + 20 * MIN,
          createdAt: T0 + 7 * MIN,
          updatedAt: NOW - MIN,
          lastSeenAt: T0 + 11 * MIN + 1,
          attestationOk: false,
          attestationAt: NOW - MIN,
          firmwareProfile: 'fw-1',
          transport: null,
          agentVersion: null,
          states: ['renewal_overdue', 'attestation_failed'],
        },
      ]);
      const [locked] = (await page({ search: 'i-14' })).rows;
      expect(locked).toMatchObject({ locked: true, lockReason: 'lost i-14', states: ['locked'], attestationOk: true });
    });

    it('maps facts.transport and facts.agent_version (strings only) and follows a facts update', async () => {
      await s.withWriteTx(async (tx) => {
        await tx.instances.create(
          instance('tv-1', { facts: { transport: 'mqtt', agent_version: '0.1.0', firmware_profile: 'fw-9' } }),
        );
        await tx.instances.create(instance('tv-2', { facts: { token_hash_prefix: 'abc' } }));
        // A database writer's JSON of the wrong type is shown as absent, not as "[object Object]" or 7.
        await tx.instances.create(instance('tv-3', { facts: { transport: { a: 1 }, agent_version: 7 } }));
      });
      const fields = async () =>
        (await page({ search: 'tv-' })).rows.map((r) => [r.id, r.transport, r.agentVersion, r.firmwareProfile]);
      expect(await fields()).toEqual([
        ['tv-1', 'mqtt', '0.1.0', 'fw-9'],
        ['tv-2', null, null, null],
        ['tv-3', null, null, null],
      ]);
      await s.withWriteTx((tx) =>
        tx.instances.updateFacts('tv-2', { transport: 'https', agent_version: '<b>9</b>' }, T0 + MIN),
      );
      expect((await fields())[1]).toEqual(['tv-2', 'https', '<b>9</b>', null]);
    });

    it('states at now match the definitions, row by row, and each state filter selects exactly its rows', async () => {
      const models = await seedFleet(s);
      const all = await page({});
      expect(all.total).toBe(models.length);
      for (const m of models) expect(all.rows.find((r) => r.id === m.id)!.states, m.id).toEqual(oracleStates(m, NOW));
      for (const state of FLEET_STATES) {
        const want = models.filter((m) => oracleStates(m, NOW).includes(state)).map((m) => m.id);
        expect(want.length, `the fixture has ${state} rows`).toBeGreaterThan(0);
        const got = await page({ state });
        expect(idsOf(got.rows).sort(), state).toEqual(want.sort());
        expect(got.total, state).toBe(want.length);
      }
      // The overdue boundary is inclusive: i-03 is exactly at it, i-08 one minute short.
      expect(all.rows.find((r) => r.id === 'i-03')!.states).toContain('renewal_overdue');
      expect(all.rows.find((r) => r.id === 'i-08')!.states).not.toContain('renewal_overdue');
      // facts.attestation.ok that is not a boolean is "not attested", not failed.
      expect(all.rows.find((r) => r.id === 'i-12')!.attestationOk).toBeNull();
    });

    it('states move with `now`: later, fresh certificates become overdue and then expired', async () => {
      const models = await seedFleet(s);
      for (const now of [NOW + 40 * MIN, NOW + 400 * MIN]) {
        const counts = await s.fleet.counts(now);
        for (const state of FLEET_STATES)
          expect(counts[state], `${state} at +${(now - NOW) / MIN} min`).toBe(
            models.filter((m) => oracleStates(m, now).includes(state)).length,
          );
      }
    });

    it('counts per state over the whole fleet', async () => {
      const models = await seedFleet(s);
      const want: Record<string, number> = { total: models.length };
      for (const st of FLEET_STATES) want[st] = models.filter((m) => oracleStates(m, NOW).includes(st)).length;
      expect(await s.fleet.counts(NOW)).toEqual(want);
    });

    it('filters by bot, join method, expiry window, search, and their combination', async () => {
      const models = await seedFleet(s);
      const expect_ = async (q: Omit<FleetQuery, 'now'>, pred: (m: Model) => boolean) => {
        const want = models.filter(pred).map((m) => m.id);
        const got = await page(q);
        expect(idsOf(got.rows).sort(), JSON.stringify(q)).toEqual(want.sort());
        expect(got.total).toBe(want.length);
      };
      await expect_({ bot: 'core' }, (m) => m.bot === 'core');
      await expect_({ bot: 'cor' }, () => false);
      await expect_({ joinMethod: 'tpm' }, (m) => m.joinMethod === 'tpm');
      // Expires within 20 min: now < notAfter <= now + 20 min (the boundary is in, expired ones are out).
      await expect_(
        { expiresWithinMs: 20 * MIN },
        (m) => m.notAfter !== null && m.notAfter > NOW && m.notAfter <= NOW + 20 * MIN,
      );
      await expect_({ expiresWithinMs: 0 }, () => false);
      // Search: a case-insensitive substring of the id, the SPIFFE ID or the bot.
      await expect_({ search: 'I-0' }, (m) => m.id.startsWith('i-0'));
      await expect_({ search: 'upper-case' }, (m) => m.id === 'UPPER-Case');
      await expect_({ search: 'bot/gw/' }, (m) => m.bot === 'gw');
      await expect_({ search: 'COR' }, (m) => m.bot === 'core');
      await expect_({ search: '' }, () => true);
      await expect_(
        { bot: 'edge', joinMethod: 'token', state: 'expired', search: 'i-' },
        (m) =>
          m.bot === 'edge' &&
          m.joinMethod === 'token' &&
          oracleStates(m, NOW).includes('expired') &&
          m.id.includes('i-'),
      );
    });

    it('search is a literal substring: %, _, a quote and a backslash match only themselves (no injection)', async () => {
      const models = await seedFleet(s);
      expect(idsOf((await page({ search: '%' })).rows)).toEqual(['pct%50']);
      expect(idsOf((await page({ search: '_' })).rows)).toEqual(['under_score']);
      expect(idsOf((await page({ search: "o'b" })).rows)).toEqual(["o'brien"]);
      expect(idsOf((await page({ search: '\\' })).rows)).toEqual(['back\\slash']);
      expect(idsOf((await page({ search: 'i-%' })).rows)).toEqual([]);
      // Statement text an attacker might hope to splice in: found nowhere, and nothing was harmed.
      for (const search of ["' OR '1'='1", "x'; DROP TABLE instances; --", "%' OR 1=1 --", '") OR 1=1 --'])
        expect(await page({ search }), search).toEqual({ rows: [], total: 0 });
      expect((await page({})).total).toBe(models.length);
    });

    for (const sort of ['id', 'bot', 'join_method', 'last_seen', 'expires', 'created', 'generation'] as const)
      for (const order of ['asc', 'desc'] as const)
        it(`sorts by ${sort} ${order}, ties broken by id`, async () => {
          const models = await seedFleet(s);
          expect(idsOf((await page({ sort, order })).rows)).toEqual(oracleSort(models, sort, order));
        });

    it('pages without overlap or gap (many ties in the sort key), the same total on every page', async () => {
      const models = await seedFleet(s);
      for (const [sort, order] of [
        ['bot', 'asc'],
        ['expires', 'desc'],
        ['generation', 'asc'],
      ] as const) {
        const seen: string[] = [];
        for (let offset = 0; offset < models.length + 7; offset += 7) {
          const p = await s.fleet.page({ now: NOW, sort, order, limit: 7, offset });
          expect(p.total).toBe(models.length);
          expect(p.rows.length).toBe(Math.max(0, Math.min(7, models.length - offset)));
          seen.push(...idsOf(p.rows));
        }
        expect(seen, `${sort} ${order}`).toEqual(oracleSort(models, sort, order));
      }
      // Past the end: no rows, the total still said.
      expect(await s.fleet.page({ now: NOW, offset: 1000, state: 'locked' })).toEqual({
        rows: [],
        total: models.filter((m) => m.locked).length,
      });
      // The same with a search (its total is counted in the same scan as the page).
      expect(await s.fleet.page({ now: NOW, offset: 1000, search: 'i-0' })).toEqual({
        rows: [],
        total: models.filter((m) => m.id.startsWith('i-0')).length,
      });
      const searched: string[] = [];
      for (let offset = 0; offset < 12; offset += 4)
        searched.push(...idsOf((await s.fleet.page({ now: NOW, search: 'i-', sort: 'bot', limit: 4, offset })).rows));
      expect(searched).toEqual(
        oracleSort(
          models.filter((m) => m.id.includes('i-')),
          'bot',
          'asc',
        ).slice(0, 12),
      );
      // Default limit 50.
      expect((await s.fleet.page({ now: NOW })).rows.length).toBe(models.length);
    });

    it('refuses bad query values with bad_request naming the field', async () => {
      await badRequest(s.fleet.page({ now: NOW, limit: 0 }), 'limit');
      await badRequest(s.fleet.page({ now: NOW, limit: 501 }), 'limit');
      await badRequest(s.fleet.page({ now: NOW, limit: 1.5 }), 'limit');
      await badRequest(s.fleet.page({ now: NOW, offset: -1 }), 'offset');
      await badRequest(s.fleet.page({ now: NOW, offset: 1e12 }), 'offset');
      await badRequest(s.fleet.page({ now: NOW, sort: 'id; DROP TABLE instances' as FleetSortKey }), 'sort');
      await badRequest(s.fleet.page({ now: NOW, sort: 'spiffe_id' as FleetSortKey }), 'sort');
      await badRequest(s.fleet.page({ now: NOW, sort: 'toString' as FleetSortKey }), 'sort');
      await badRequest(s.fleet.page({ now: NOW, order: 'up' as 'asc' }), 'order');
      await badRequest(s.fleet.page({ now: NOW, state: 'bogus' as FleetState }), 'state');
      await badRequest(s.fleet.page({ now: NOW, search: 'x'.repeat(201) }), 'search');
      await badRequest(s.fleet.page({ now: NOW, search: 'a\u0000b' }), 'search');
      await badRequest(s.fleet.page({ now: NOW, bot: 7 as unknown as string }), 'bot');
      await badRequest(s.fleet.page({ now: NOW, expiresWithinMs: -1 }), 'expiresWithinMs');
      await badRequest(s.fleet.page({ now: Number.NaN }), 'now');
      await badRequest(s.fleet.counts(Number.POSITIVE_INFINITY), 'now');
      await badRequest(s.fleet.activity(T0, T0 + MIN, 59_999), 'bucketMs');
      await badRequest(s.fleet.activity(T0, T0 + 100_000 * 24 * 60 * MIN, MIN), 'bucketMs');
      await badRequest(s.fleet.activity(T0 + MIN, T0, MIN), 'to');
      await badRequest(s.fleet.certificateAges(NOW, [MIN, MIN]), 'edgesMs');
      await badRequest(s.fleet.certificateAges(NOW, [-1]), 'edgesMs');
      await badRequest(s.fleet.audit({ limit: 0 }), 'limit');
      await badRequest(s.fleet.audit({ limit: 501 }), 'limit');
      await badRequest(s.fleet.audit({ actor: 'x'.repeat(513) }), 'actor');
      // At the limits: accepted.
      expect((await s.fleet.page({ now: NOW, limit: 500, search: 'x'.repeat(200) })).rows).toEqual([]);
      expect((await s.fleet.page({ now: NOW, limit: 1 })).rows).toEqual([]);
    });

    it('certificate age histogram over unexpired current certificates', async () => {
      const models = await seedFleet(s);
      const edges = [10 * MIN, 30 * MIN, 45 * MIN];
      const want = [0, 0, 0, 0];
      for (const m of models) {
        if (m.notAfter === null || m.notBefore === null || m.notAfter <= NOW) continue;
        const age = NOW - m.notBefore;
        want[edges.filter((e) => age >= e).length]!++;
      }
      expect(want.reduce((a, b) => a + b)).toBeGreaterThan(0);
      expect(await s.fleet.certificateAges(NOW, edges)).toEqual(want);
      expect(await s.fleet.certificateAges(NOW, [])).toEqual([want.reduce((a, b) => a + b)]);
    });
  });

  describe('fleet audit query and activity', () => {
    /** A time aligned to 5 minutes (bucket starts are multiples of the bucket size). */
    const A = Math.ceil(T0 / (5 * MIN)) * 5 * MIN;

    /** Events at known times: renewals, refusals (one an attestation check), an attest refusal, admin actions. */
    async function seedAudit(): Promise<void> {
      const ev = [
        { at: A + 10_000, action: 'renew', outcome: 'ok', instanceId: 'i-1', actor: 'agent' },
        { at: A + 20_000, action: 'renew', outcome: 'ok', instanceId: 'i-2', actor: 'agent' },
        {
          at: A + 30_000,
          action: 'renew',
          outcome: 'refused',
          code: 'generation_mismatch',
          instanceId: 'i-1',
          actor: 'agent',
        },
        {
          at: A + MIN + 5_000,
          action: 'join',
          outcome: 'refused',
          code: 'pcr_mismatch',
          instanceId: null,
          actor: 'agent',
        },
        {
          at: A + MIN + 6_000,
          action: 'attest',
          outcome: 'refused',
          code: 'quote_nonce_mismatch',
          instanceId: 'i-2',
          actor: 'agent',
        },
        { at: A + MIN + 7_000, action: 'join', outcome: 'ok', instanceId: 'i-3', actor: 'agent' },
        { at: A + 3 * MIN, action: 'lock', outcome: 'ok', instanceId: 'i-1', actor: 'admin' },
        { at: A + 3 * MIN + 1, action: 'renew', outcome: 'ok', instanceId: 'i-2', actor: 'agent' },
        { at: A + 3 * MIN + 2, action: 'unlock', outcome: 'ok', instanceId: 'i-1', actor: 'ui:alice' },
        { at: A + 4 * MIN, action: 'renew', outcome: 'error', instanceId: 'i-3', actor: 'agent' },
      ];
      for (const e of ev) {
        const { at, ...rest } = e;
        await s.audit.append({ bot: 'edge', method: 'token', details: {}, ...rest }, at);
      }
    }

    it('audit: newest first, each filter, time window, beforeSeq paging', async () => {
      await seedAudit();
      const all = await s.fleet.audit({});
      expect(all.map((r) => r.seq)).toEqual([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
      expect(all[0]).toMatchObject({
        action: 'renew',
        outcome: 'error',
        instanceId: 'i-3',
        actor: 'agent',
        details: {},
      });
      expect(all[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
      const seqs = async (q: Parameters<Stores['fleet']['audit']>[0]) => (await s.fleet.audit(q)).map((r) => r.seq);
      expect(await seqs({ actor: 'admin' })).toEqual([7]);
      expect(await seqs({ actor: 'ui:alice' })).toEqual([9]);
      expect(await seqs({ action: 'renew' })).toEqual([10, 8, 3, 2, 1]);
      expect(await seqs({ outcome: 'refused' })).toEqual([5, 4, 3]);
      expect(await seqs({ instanceId: 'i-1' })).toEqual([9, 7, 3, 1]);
      expect(await seqs({ instanceId: 'i-1', action: 'renew', outcome: 'ok' })).toEqual([1]);
      // [from, to): from inclusive, to exclusive.
      expect(await seqs({ from: A + 20_000, to: A + 3 * MIN })).toEqual([6, 5, 4, 3, 2]);
      expect(await seqs({ from: A + 3 * MIN + 2 })).toEqual([10, 9]);
      expect(await seqs({ limit: 3 })).toEqual([10, 9, 8]);
      expect(await seqs({ limit: 3, beforeSeq: 8 })).toEqual([7, 6, 5]);
      expect(await seqs({ action: 'renew', beforeSeq: 3 })).toEqual([2, 1]);
      expect(await seqs({ beforeSeq: 1 })).toEqual([]);
      expect(await seqs({ actor: "agent' OR '1'='1" })).toEqual([]);
    });

    it('activity: renewals, refusals and attestation failures per aligned bucket, empty buckets zero', async () => {
      await seedAudit();
      // From mid-bucket: the first bucket starts at the aligned minute.
      expect(await s.fleet.activity(A + 15_000, A + 5 * MIN, MIN)).toEqual([
        { start: A, renewals: 1, refusals: 1, attestationFailures: 0 },
        { start: A + MIN, renewals: 0, refusals: 2, attestationFailures: 2 },
        { start: A + 2 * MIN, renewals: 0, refusals: 0, attestationFailures: 0 },
        { start: A + 3 * MIN, renewals: 1, refusals: 0, attestationFailures: 0 },
        { start: A + 4 * MIN, renewals: 0, refusals: 0, attestationFailures: 0 },
      ]);
      expect(await s.fleet.activity(A, A + 5 * MIN, 5 * MIN)).toEqual([
        { start: A, renewals: 3, refusals: 3, attestationFailures: 2 },
      ]);
      expect(await s.fleet.activity(A, A, MIN)).toEqual([]);
    });
  });
}
