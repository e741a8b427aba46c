/**
 * The fleet view over HTTP at scale (issue #18): 100,000 seeded instances (bench/lib/seed-fleet.ts)
 * in a real data directory, the issuer's own fastify app with the fleet view registered
 * (src/server/ui/routes.ts), signed in, and each page requested again and again, interleaved:
 * the fleet page's first load (counts, one page of rows, the activity and certificate-age charts),
 * filtered searches, a machine page and the audit page. On SQLite and on PostgreSQL.
 *
 * "Server time" is the handler's own time (the `server-timing: app;dur=` header the view sets
 * from fastify's reply.elapsedTime: request received to response sent), not the network. On this
 * shared machine wall-clock moves with the load, so the issuer process's CPU per request is
 * printed beside it (and the PostgreSQL server's, read from /proc). Page weight: the first load's
 * HTML plus the CSS and JS it links, uncompressed and gzipped, against the stated budget.
 *
 *   npm run bench -- fleet-ui [--instances 100000] [--runs 30] [--backend sqlite|postgres|both]
 *
 * Last stdout line: {"bench":"fleet-ui","instances":…,"results":{"sqlite":{"<page>":{"p50_ms":…,"p95_ms":…,"cpu_ms":…,"bytes":…}}},"weight":{…}}
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { readAuditKey } from '../src/server/audit/audit-key.js';
import {
  initDataDirWithStore,
  loadCaMaterial,
  openIssuerStores,
  paths,
  readAdminToken,
} from '../src/server/data-dir.js';
import { createIssuerContext } from '../src/server/issuer.js';
import type { Stores } from '../src/server/store/types.js';
import { FleetUi } from '../src/server/ui/fleet-ui.js';
import { registerFleetUi } from '../src/server/ui/routes.js';
import { buildHttpsServer } from '../src/transport/https/server.js';
import { silentLogger } from '../src/util/log.js';
import { percentile } from './lib/percentile.js';
import { cpuBetween, startBenchPostgres, type BenchPostgres } from './lib/postgres-store.js';
import { seedFleet, type SeedFleetResult } from './lib/seed-fleet.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const INSTANCES = Number(arg('instances', '100000'));
const RUNS = Number(arg('runs', '30'));
const BACKEND = arg('backend', 'both');
/** The issue's target for the fleet page's first load and a filtered search. */
const P95_TARGET_MS = 200;
/** First load: HTML + CSS + JS, uncompressed (what a browser on a slow link parses). */
const WEIGHT_BUDGET_BYTES = 100 * 1024;

interface Page {
  name: string;
  url: string;
  /** Counted against the p95 target. */
  target: boolean;
  /** Served by a view that keeps nothing: counts and charts recomputed on every request. */
  cold?: boolean;
}

function pages(seed: SeedFleetResult): Page[] {
  const narrow = seed.samples.healthy!.slice(2, 12);
  const bot = seed.bots[3]!;
  return [
    { name: 'fleet: first load', url: '/ui/', target: true },
    { name: 'fleet: first load, nothing kept (cold)', url: '/ui/', target: true, cold: true },
    { name: 'fleet: state attestation_failed', url: '/ui/?state=attestation_failed', target: true },
    { name: 'fleet: search one id (10 chars)', url: `/ui/?q=${narrow}`, target: true },
    {
      name: `fleet: bot ${bot} + tpm + expires 15m`,
      url: `/ui/?bot=${bot}&method=tpm&expires=15m&sort=expires&order=asc`,
      target: true,
    },
    { name: 'fleet: renewal_overdue, page 20', url: '/ui/?state=renewal_overdue&page=20', target: true },
    { name: 'fleet: 200 rows sorted by expiry', url: '/ui/?per=200&sort=expires&order=asc', target: false },
    {
      name: 'machine page',
      url: `/ui/machine/${seed.samples.attestation_failed ?? seed.samples.healthy!}`,
      target: false,
    },
    { name: 'audit: newest 100', url: '/ui/audit', target: false },
    { name: 'audit: refused, one action', url: '/ui/audit?outcome=refused&action=renew', target: false },
  ];
}

interface Figures {
  p50_ms: number;
  p95_ms: number;
  /** This process's CPU per request (handler, store client, rendering; inject's own overhead included). */
  cpu_ms: number;
  /** PostgreSQL's CPU per request, its processes read from /proc. */
  db_cpu_ms?: number;
  bytes: number;
  status: number;
}

/** An app with the view registered, and a signed-in session's cookie. */
interface SignedApp {
  app: FastifyInstance;
  cookie: string;
}

async function measure(
  warm: SignedApp,
  cold: SignedApp,
  list: Page[],
  pg?: BenchPostgres,
): Promise<Record<string, Figures>> {
  const timings = new Map<string, number[]>(list.map((p) => [p.name, []]));
  const cpu = new Map<string, number>(list.map((p) => [p.name, 0]));
  const dbCpu = new Map<string, number>(list.map((p) => [p.name, 0]));
  const last = new Map<string, { bytes: number; status: number }>();
  const get = (p: Page) => {
    const { app, cookie } = p.cold ? cold : warm;
    return app.inject({ method: 'GET', url: p.url, headers: { cookie } });
  };
  for (const p of list) for (let i = 0; i < 3; i++) await get(p); // warm: statement caches, JIT
  for (let r = 0; r < RUNS; r++) {
    for (const p of list) {
      const db0 = pg?.cpu();
      const c0 = process.cpuUsage();
      const res = await get(p);
      const c = process.cpuUsage(c0);
      if (pg && db0) dbCpu.set(p.name, dbCpu.get(p.name)! + cpuBetween(db0, pg.cpu()) * 1000);
      cpu.set(p.name, cpu.get(p.name)! + (c.user + c.system) / 1000);
      const dur = /app;dur=([\d.]+)/.exec(String(res.headers['server-timing']))?.[1];
      timings.get(p.name)!.push(Number(dur));
      last.set(p.name, { bytes: res.rawPayload.length, status: res.statusCode });
    }
  }
  const out: Record<string, Figures> = {};
  for (const p of list) {
    const t = timings.get(p.name)!.sort((a, b) => a - b);
    out[p.name] = {
      p50_ms: percentile(t, 50),
      p95_ms: percentile(t, 95),
      cpu_ms: Math.round((cpu.get(p.name)! / RUNS) * 10) / 10,
      ...(pg ? { db_cpu_ms: Math.round((dbCpu.get(p.name)! / RUNS) * 10) / 10 } : {}),
      ...last.get(p.name)!,
    };
  }
  return out;
}

async function run(
  backend: 'sqlite' | 'postgres',
): Promise<{ results: Record<string, Figures>; weight: Record<string, number>; seed: SeedFleetResult }> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-ui-'));
  const pg = backend === 'postgres' ? await startBenchPostgres() : undefined;
  let stores: Stores | undefined;
  try {
    const dataDir = join(dir, 'issuer');
    await initDataDirWithStore(dataDir, 'example.org', pg?.url);
    // The issuer creates audit.key on first start; do it now so the seeded rows chain with it.
    stores = openIssuerStores(dataDir, { createAuditKey: true, ...(pg ? { store: pg.url } : {}) });
    await (stores as { ready?: Promise<void> }).ready;
    const key = readAuditKey(paths(dataDir).auditKey);
    const t0 = Date.now();
    const seed = await seedFleet(pg ? { postgres: pg.url } : { sqlite: paths(dataDir).db }, {
      instances: INSTANCES,
      now: Date.now(),
      ...(key ? { auditKey: { secret: key.secret, fromSeq: key.fromSeq } } : {}),
    });
    process.stdout.write(
      `${backend}: seeded ${seed.instances} instances, ${seed.auditRows} audit rows in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    const ctx = createIssuerContext({ ca: loadCaMaterial(dataDir), stores, log: silentLogger() });
    const app = buildHttpsServer({ ctx, tls: false });
    const ui = new FleetUi(ctx, { dataDir });
    registerFleetUi(app, ui);
    await app.ready();
    // The same view keeping nothing (counts and charts every request), as the worst case.
    const coldApp = buildHttpsServer({ ctx, tls: false });
    registerFleetUi(coldApp, new FleetUi(ctx, { dataDir, countsTtlMs: 0, chartsTtlMs: 0 }));
    await coldApp.ready();
    const signIn = async (a: FastifyInstance): Promise<SignedApp> => {
      const r = await a.inject({
        method: 'POST',
        url: '/ui/sign-in',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `token=${encodeURIComponent(readAdminToken(dataDir))}`,
      });
      return { app: a, cookie: String(r.headers['set-cookie']).split(';')[0]! };
    };
    const warm = await signIn(app);
    const { cookie } = warm;
    const list = pages(seed);
    const results = await measure(warm, await signIn(coldApp), list, pg);
    for (const [name, f] of Object.entries(results))
      process.stdout.write(
        `${backend.padEnd(8)} ${name.padEnd(46)} p50 ${f.p50_ms.toFixed(1).padStart(6)} ms  p95 ${f.p95_ms.toFixed(1).padStart(6)} ms  cpu ${f.cpu_ms.toFixed(1).padStart(6)} ms${f.db_cpu_ms !== undefined ? `  db cpu ${f.db_cpu_ms.toFixed(1).padStart(5)} ms` : ''}  ${(f.bytes / 1024).toFixed(1).padStart(6)} KB  ${f.status}\n`,
      );
    const first = await app.inject({ method: 'GET', url: '/ui/', headers: { cookie } });
    const css = ui.assets.get('ui.css')!.body;
    const js = ui.assets.get('ui.js')!.body;
    const weight = {
      html: first.rawPayload.length,
      css: css.length,
      js: js.length,
      total: first.rawPayload.length + css.length + js.length,
      total_gzip: gzipSync(first.rawPayload).length + gzipSync(css).length + gzipSync(js).length,
      budget: WEIGHT_BUDGET_BYTES,
    };
    await app.close();
    await coldApp.close();
    return { results, weight, seed };
  } finally {
    await stores?.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const out: Record<string, Record<string, Figures>> = {};
let weight: Record<string, number> | undefined;
let ok = true;
for (const backend of BACKEND === 'both' ? (['sqlite', 'postgres'] as const) : [BACKEND as 'sqlite' | 'postgres']) {
  const r = await run(backend);
  out[backend] = r.results;
  weight ??= r.weight;
  for (const p of pages(r.seed)) {
    const f = r.results[p.name]!;
    if (p.target && f.p95_ms > P95_TARGET_MS) {
      ok = false;
      process.stdout.write(`  over target: ${backend} ${p.name} p95 ${f.p95_ms} ms > ${P95_TARGET_MS} ms\n`);
    }
  }
}
if (weight) {
  process.stdout.write(
    `page weight, first load: HTML ${(weight['html']! / 1024).toFixed(1)} KB + CSS ${(weight['css']! / 1024).toFixed(1)} KB + JS ${(weight['js']! / 1024).toFixed(1)} KB = ${(weight['total']! / 1024).toFixed(1)} KB (gzip ${(weight['total_gzip']! / 1024).toFixed(1)} KB); budget ${(WEIGHT_BUDGET_BYTES / 1024).toFixed(0)} KB\n`,
  );
  if (weight['total']! > WEIGHT_BUDGET_BYTES) ok = false;
}
process.stdout.write(
  JSON.stringify({
    bench: 'fleet-ui',
    instances: INSTANCES,
    runs: RUNS,
    p95_target_ms: P95_TARGET_MS,
    within_target: ok,
    results: out,
    weight,
  }) + '\n',
);
