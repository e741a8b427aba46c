/**
 * The fleet view's queries at scale (issue #18): 100,000 seeded instances (bench/lib/seed-fleet.ts:
 * certificates, 20 bots, four join methods, expired / overdue / locked / attestation-failed ones,
 * 4 audit rows per instance over the last 2 hours), then each fleet read model query
 * (src/server/store/fleet-types.ts) run again and again, interleaved, on SQLite and on PostgreSQL,
 * next to an anchor measured in the same rounds: a bare `SELECT count(*) FROM instances` on the same
 * connection kind.
 *
 * "Server time" is the store call as the issuer makes it (SQLite: in process, on the read
 * connection; PostgreSQL: the pool over loopback, plus the server's own CPU read from /proc). On a
 * shared machine the wall-clock figures move with the load; CPU per call moves less and is printed
 * beside them.
 *
 *   npm run bench -- fleet-page [--instances 100000] [--runs 30] [--backend sqlite|postgres|both]
 *
 * Last stdout line: {"bench":"fleet-page","instances":…,"runs":…,"results":{"sqlite":{"<query>":{"p50_ms":…,"p95_ms":…,"cpu_ms":…}},…}}
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import { openSqliteStores } from '../src/server/store/sqlite/index.js';
import { openPostgresStores } from '../src/server/store/postgres/index.js';
import type { Stores } from '../src/server/store/types.js';
import { percentile } from './lib/percentile.js';
import { cpuBetween, startBenchPostgres } from './lib/postgres-store.js';
import { seedFleet, type SeedFleetResult } from './lib/seed-fleet.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const INSTANCES = Number(arg('instances', '100000'));
const RUNS = Number(arg('runs', '30'));
const BACKEND = arg('backend', 'both');
const NOW = Date.UTC(2026, 11, 5, 6, 0, 0);
const MIN = 60_000;

type Query = { name: string; run: () => Promise<unknown> };

function queries(stores: Stores, seed: SeedFleetResult, anchor: () => Promise<unknown>): Query[] {
  const f = stores.fleet;
  const narrow = seed.samples.healthy!.slice(2, 12); // 10 characters of one instance id
  const someBot = seed.bots[3]!;
  return [
    { name: 'anchor: SELECT count(*) FROM instances', run: anchor },
    { name: 'page: first (sort id)', run: () => f.page({ now: NOW }) },
    { name: 'page: sort last_seen desc', run: () => f.page({ now: NOW, sort: 'last_seen', order: 'desc' }) },
    { name: 'page: state attestation_failed', run: () => f.page({ now: NOW, state: 'attestation_failed' }) },
    {
      name: 'page: state renewal_overdue, page 20',
      run: () => f.page({ now: NOW, state: 'renewal_overdue', offset: 1000 }),
    },
    { name: 'page: search (narrow, one id)', run: () => f.page({ now: NOW, search: narrow }) },
    { name: `page: search (broad, "${someBot}")`, run: () => f.page({ now: NOW, search: someBot }) },
    { name: 'page: bot + sort expires', run: () => f.page({ now: NOW, bot: someBot, sort: 'expires' }) },
    {
      name: 'page: expires within 10 min',
      run: () => f.page({ now: NOW, expiresWithinMs: 10 * MIN, sort: 'expires' }),
    },
    { name: 'counts', run: () => f.counts(NOW) },
    { name: 'audit: newest 100', run: () => f.audit({}) },
    { name: 'audit: one instance', run: () => f.audit({ instanceId: seed.samples.healthy! }) },
    { name: 'audit: refusals, last hour', run: () => f.audit({ outcome: 'refused', from: NOW - 60 * MIN }) },
    { name: 'activity: last hour per minute', run: () => f.activity(NOW - 60 * MIN, NOW, MIN) },
    {
      name: 'certificate ages',
      run: () => f.certificateAges(NOW, [5 * MIN, 15 * MIN, 30 * MIN, 60 * MIN, 6 * 60 * MIN]),
    },
  ];
}

interface Figures {
  p50_ms: number;
  p95_ms: number;
  /** This process's CPU per call. */
  cpu_ms: number;
  /** The database server's CPU per call (PostgreSQL only). */
  server_cpu_ms?: number;
}

/** Each round runs every query once, in turn (interleaved: load changes hit all of them alike). */
async function measure(qs: Query[], serverCpu?: () => Map<number, number>): Promise<Record<string, Figures>> {
  for (const q of qs) for (let i = 0; i < 3; i++) await q.run(); // warm caches and prepared statements
  const wall = new Map<string, number[]>(qs.map((q) => [q.name, []]));
  const cpu = new Map<string, number>(qs.map((q) => [q.name, 0]));
  const srv = new Map<string, number>(qs.map((q) => [q.name, 0]));
  for (let r = 0; r < RUNS; r++) {
    for (const q of qs) {
      const s0 = serverCpu?.();
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await q.run();
      const t1 = process.hrtime.bigint();
      const c1 = process.cpuUsage(c0);
      wall.get(q.name)!.push(Number(t1 - t0) / 1e6);
      cpu.set(q.name, cpu.get(q.name)! + (c1.user + c1.system) / 1000);
      if (s0 && serverCpu) srv.set(q.name, srv.get(q.name)! + cpuBetween(s0, serverCpu()) * 1000);
    }
  }
  const out: Record<string, Figures> = {};
  for (const q of qs) {
    const w = wall.get(q.name)!.sort((a, b) => a - b);
    out[q.name] = {
      p50_ms: round(percentile(w, 50)),
      p95_ms: round(percentile(w, 95)),
      cpu_ms: round(cpu.get(q.name)! / RUNS),
      ...(serverCpu ? { server_cpu_ms: round(srv.get(q.name)! / RUNS) } : {}),
    };
  }
  return out;
}

const round = (x: number) => Math.round(x * 100) / 100;

function print(label: string, seed: SeedFleetResult, figures: Record<string, Figures>): void {
  process.stdout.write(
    `\n${label}: ${seed.instances} instances, ${seed.auditRows} audit rows, seeded in ${seed.seconds.toFixed(1)} s; ${RUNS} runs each\n`,
  );
  const pg = Object.values(figures).some((f) => f.server_cpu_ms !== undefined);
  process.stdout.write(
    `  ${'query'.padEnd(42)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'cpu ms'.padStart(8)}${pg ? ' ' + 'pg cpu ms'.padStart(10) : ''}\n`,
  );
  for (const [name, f] of Object.entries(figures))
    process.stdout.write(
      `  ${name.padEnd(42)} ${f.p50_ms.toFixed(2).padStart(8)} ${f.p95_ms.toFixed(2).padStart(8)} ${f.cpu_ms.toFixed(2).padStart(8)}` +
        `${f.server_cpu_ms !== undefined ? ' ' + f.server_cpu_ms.toFixed(2).padStart(10) : ''}\n`,
    );
}

async function benchSqlite(): Promise<Record<string, Figures>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-bench-fleet-'));
  try {
    const file = path.join(dir, 'issuer.db');
    const seed = await seedFleet({ sqlite: file }, { instances: INSTANCES, now: NOW });
    const stores = openSqliteStores(file);
    const raw = new Database(file, { readonly: true });
    const count = raw.prepare('SELECT count(*) FROM instances').pluck();
    try {
      const figures = await measure(queries(stores, seed, async () => count.get()));
      print('SQLite (file, read connection)', seed, figures);
      return figures;
    } finally {
      raw.close();
      await stores.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function benchPostgres(): Promise<Record<string, Figures>> {
  const pg = await startBenchPostgres();
  try {
    const seed = await seedFleet({ postgres: pg.url }, { instances: INSTANCES, now: NOW });
    const stores = openPostgresStores(pg.url);
    await stores.ready;
    const raw = postgres(pg.url, { max: 1, onnotice: () => undefined, fetch_types: false });
    try {
      const figures = await measure(
        queries(stores, seed, () => raw`SELECT count(*) FROM instances`),
        () => pg.cpu(),
      );
      print('PostgreSQL (pool, loopback)', seed, figures);
      return figures;
    } finally {
      await raw.end({ timeout: 5 });
      await stores.close();
    }
  } finally {
    await pg.stop();
  }
}

const results: Record<string, Record<string, Figures>> = {};
if (BACKEND === 'sqlite' || BACKEND === 'both') results['sqlite'] = await benchSqlite();
if (BACKEND === 'postgres' || BACKEND === 'both') results['postgres'] = await benchPostgres();
process.stdout.write(`${JSON.stringify({ bench: 'fleet-page', instances: INSTANCES, runs: RUNS, results })}\n`);
