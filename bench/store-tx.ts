/**
 * What the async store contract costs (issue #13): a renewal-shaped write transaction through the
 * synchronous SQLite stores' `tx` (sqlite/sync.ts, internal since phase 2) against the async `withWriteTx` (FIFO write queue, BEGIN
 * IMMEDIATE … COMMIT, one await per store call), one at a time and with many in flight. Shape:
 * idempotency get, instance get, certificate insert, instance recordIssue, idempotency put, audit
 * append. Each variant gets its own database file; rounds alternate and the best round counts.
 * Besides wall-clock throughput it reports this process's CPU time per transaction, which moves
 * less when other processes share the machine.
 *
 *   npx tsx bench/store-tx.ts            (or: npm run bench -- store-tx)
 *   env STORE_TX_N=4000 STORE_TX_ROUNDS=3 STORE_TX_INFLIGHT=16
 *
 * Last stdout line: {"bench":"store-tx","n":…,"sync_tx_per_s":…,"async_tx_per_s":…,"async_inflight_tx_per_s":…,"inflight":…,
 *                    "sync_cpu_us":…,"async_cpu_us":…,"async_inflight_cpu_us":…,"async_overhead_pct":…,"async_cpu_overhead_pct":…}
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSqliteStores, openSyncSqliteStores, type SyncStores } from '../src/server/store/sqlite/index.js';
import type { Stores, TxStores } from '../src/server/store/types.js';

const N = Number(process.env.STORE_TX_N ?? 4000);
const ROUNDS = Number(process.env.STORE_TX_ROUNDS ?? 3);
const INFLIGHT = Number(process.env.STORE_TX_INFLIGHT ?? 16);
const INSTANCES = 200;
const T0 = 1_700_000_000_000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigil-bench-store-tx-'));
let fileNo = 0;
const freshPath = (): string => path.join(dir, `issuer-${fileNo++}.db`);
const instanceRec = (i: number) => ({
  id: `inst-${i}`,
  bot: 'edge',
  joinMethod: 'token',
  spiffeId: `spiffe://example.org/bot/edge/inst-${i}`,
  generation: 1,
  facts: {},
  keyStorage: 'software' as const,
  exportable: true,
  createdAt: T0,
});

const instanceOf = (k: number): string => `inst-${k % INSTANCES}`;
const requestOf = (k: number): string => `req-${k}`;

/**
 * One renewal's worth of store work; `k` is unique per transaction across the run. The records are
 * built here once, so that the synchronous and the async variant write exactly the same rows.
 */
function renewal(k: number, generation: number) {
  const id = instanceOf(k);
  const serial = (0x1000000 + k).toString(16);
  const requestId = requestOf(k);
  return {
    id,
    requestId,
    certificate: {
      serial,
      instanceId: id,
      bot: 'edge',
      generation,
      notBefore: T0,
      notAfter: T0 + 3_600_000,
      kind: 'x509-svid',
      keyStorage: 'software' as const,
      exportable: true,
      spkiHash: 'sha256:' + 'ab'.repeat(32),
      requestId,
      issuedAt: T0,
    },
    issue: {
      generation,
      serial,
      notAfter: T0 + 3_600_000,
      keyStorage: 'software' as const,
      exportable: true,
      now: T0 + k,
    },
    answer: {
      requestId,
      requestHash: 'cd'.repeat(32),
      signer: `${id} sha256:00`,
      op: 'renew',
      response: `{"serial":"${serial}"}`,
      createdAt: T0 + k,
    },
    audit: {
      action: 'renew',
      outcome: 'ok',
      bot: 'edge',
      instanceId: id,
      method: 'token',
      details: { serial, generation },
    },
  };
}

function syncRenewal(s: SyncStores, k: number): void {
  s.tx(() => {
    if (s.idempotency.get(requestOf(k))) throw new Error('replayed');
    const r = renewal(k, s.instances.get(instanceOf(k))!.generation + 1);
    s.certificates.insert(r.certificate);
    s.instances.recordIssue(r.id, r.issue);
    s.idempotency.put(r.answer);
    s.audit.append(r.audit, T0 + k);
  });
}

async function asyncRenewal(s: Stores, k: number): Promise<void> {
  await s.withWriteTx(async (tx: TxStores) => {
    if (await tx.idempotency.get(requestOf(k))) throw new Error('replayed');
    const r = renewal(k, (await tx.instances.get(instanceOf(k)))!.generation + 1);
    await tx.certificates.insert(r.certificate);
    await tx.instances.recordIssue(r.id, r.issue);
    await tx.idempotency.put(r.answer);
    await tx.audit.append(r.audit, T0 + k);
  });
}

interface Figures {
  txPerS: number;
  /** This process's CPU time (user + system) per transaction, µs. */
  cpuUs: number;
}

/** Time `n` transactions' worth of `work`, wall clock and CPU. */
async function measure(work: () => unknown): Promise<Figures> {
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await work();
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  return { txPerS: (N / ms) * 1000, cpuUs: (cpu.user + cpu.system) / N };
}

async function runSync(): Promise<Figures> {
  const s = openSyncSqliteStores(freshPath());
  s.tx(() => {
    for (let i = 0; i < INSTANCES; i++) s.instances.create(instanceRec(i));
  });
  const f = await measure(() => {
    for (let k = 0; k < N; k++) syncRenewal(s, k);
  });
  if (!s.audit.verify().ok) throw new Error('audit chain does not verify');
  s.close();
  return f;
}

async function runAsync(inflight: number): Promise<Figures> {
  const s = openSqliteStores(freshPath());
  await s.withWriteTx(async (tx) => {
    for (let i = 0; i < INSTANCES; i++) await tx.instances.create(instanceRec(i));
  });
  let next = 0;
  // `inflight` callers, each starting its next transaction as soon as its last one committed.
  const f = await measure(() =>
    Promise.all(
      Array.from({ length: inflight }, async () => {
        while (next < N) await asyncRenewal(s, next++);
      }),
    ),
  );
  if (!(await s.audit.verify()).ok) throw new Error('audit chain does not verify');
  await s.close();
  return f;
}

try {
  const zero = (): Figures => ({ txPerS: 0, cpuUs: Infinity });
  const best = { sync: zero(), async: zero(), inflight: zero() };
  const keep = (b: Figures, f: Figures): Figures => ({
    txPerS: Math.max(b.txPerS, f.txPerS),
    cpuUs: Math.min(b.cpuUs, f.cpuUs),
  });
  const show = (f: Figures): string => `${f.txPerS.toFixed(0)} tx/s (${f.cpuUs.toFixed(0)} µs CPU/tx)`;
  for (let round = 0; round < ROUNDS; round++) {
    const sync = await runSync();
    const one = await runAsync(1);
    const many = await runAsync(INFLIGHT);
    best.sync = keep(best.sync, sync);
    best.async = keep(best.async, one);
    best.inflight = keep(best.inflight, many);
    process.stdout.write(
      `round ${round + 1}: sync ${show(sync)}, async ${show(one)}, async with ${INFLIGHT} in flight ${show(many)}\n`,
    );
  }
  const overhead = (best.sync.txPerS / best.async.txPerS - 1) * 100;
  const cpuOverhead = (best.async.cpuUs / best.sync.cpuUs - 1) * 100;
  process.stdout.write(
    `best of ${ROUNDS} (${N} renewal transactions each): sync ${show(best.sync)}, async ${show(best.async)}, ${INFLIGHT} in flight ${show(best.inflight)}\n`,
  );
  process.stdout.write(
    `async costs ${overhead.toFixed(1)}% in throughput, ${cpuOverhead.toFixed(1)}% in CPU (${(best.async.cpuUs - best.sync.cpuUs).toFixed(1)} µs per transaction)\n`,
  );
  const r = (x: number): number => Number(x.toFixed(1));
  process.stdout.write(
    JSON.stringify({
      bench: 'store-tx',
      n: N,
      sync_tx_per_s: Math.round(best.sync.txPerS),
      async_tx_per_s: Math.round(best.async.txPerS),
      async_inflight_tx_per_s: Math.round(best.inflight.txPerS),
      inflight: INFLIGHT,
      sync_cpu_us: r(best.sync.cpuUs),
      async_cpu_us: r(best.async.cpuUs),
      async_inflight_cpu_us: r(best.inflight.cpuUs),
      async_overhead_pct: r(overhead),
      async_cpu_overhead_pct: r(cpuOverhead),
    }) + '\n',
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
