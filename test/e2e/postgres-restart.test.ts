/**
 * PostgreSQL restarted in the middle of the load (issue #15 "Faults"), real processes: two issuer
 * processes on one database, agents renewing through both as the agent's outbox does (a request
 * built once, resent byte for byte with the same request id after each retryable failure).
 * While the database is down the issuers answer the retryable 503 `store_unavailable` and
 * `/readyz` is red on both; once it is back `/readyz` turns green without a restart and every
 * agent catches up. From the database afterwards: each request id has exactly the one
 * certificate its agent was answered, every instance reached its last generation, none is
 * locked, and the audit chain verifies (nothing half-written by the transactions the restart cut).
 *
 * (test/unit/store/postgres-issuer.test.ts covers the same with the issuer in the test's process.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SigilError } from '../../src/errors.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { paths } from '../../src/server/data-dir.js';
import { openPostgresIssuerStores } from '../../src/server/data-dir-store.js';
import {
  adminCall,
  initIssuerDirs,
  readyz,
  startIssuerProcess,
  TestAgent,
  type IssuerDirs,
  type IssuerProc,
} from '../helpers/postgres-issuers.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';
import { POLICY } from '../integration/harness.js';

const AGENTS = 12;
const ROUNDS = 6;

let pg: Postgres;
let url: string;
let dirs: IssuerDirs;
let issuers: IssuerProc[] = [];
let agents: TestAgent[] = [];

async function until(cond: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  dirs = await initIssuerDirs(url, 2);
  issuers = await Promise.all(dirs.dirs.map((d) => startIssuerProcess(d, url)));
  await adminCall(issuers[0]!.url, dirs, 'apply', { yaml: POLICY });
  agents = await Promise.all(
    Array.from({ length: AGENTS }, async (_, k) => {
      const { token } = await adminCall(issuers[0]!.url, dirs, 'token.create', { bot: 'gw' });
      return TestAgent.join(issuers[k % 2]!.url, dirs, token);
    }),
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(issuers.map((i) => i.stop()));
  await pg?.stop();
  dirs?.cleanup();
}, 60_000);

describe('PostgreSQL restarted while agents renew through two issuers', () => {
  it('retryable 503s and a red /readyz while it is down, green after, every agent catches up, nothing half-written', async () => {
    const retried: Record<string, number> = {};
    let sawUnavailable!: () => void;
    const unavailable = new Promise<void>((r) => (sawUnavailable = r));
    const onRetry = (e: SigilError): void => {
      retried[e.code] = (retried[e.code] ?? 0) + 1;
      if (e.code === 'store_unavailable') sawUnavailable();
    };
    const answered = new Map<string, string>();
    let done = 0;
    let restartNow!: () => void;
    const halfway = new Promise<void>((r) => (restartNow = r));
    const load = Promise.all(
      agents.map(async (a, k) => {
        for (let round = 0; round < ROUNDS; round++) {
          const r = await a.renewResending(issuers[(k + round) % 2]!.url, onRetry);
          answered.set(r.requestId, r.serial);
          if (++done === Math.floor((AGENTS * ROUNDS) / 3)) restartNow();
        }
      }),
    );
    const red: number[] = [];
    const restarted = halfway.then(() =>
      pg.restart({
        whileDown: async () => {
          // Down: both issuers say so to a load balancer, and agents are told to retry.
          for (const i of issuers) await until(async () => (await readyz(i.url, dirs)) === 503, 'a red /readyz');
          red.push(...(await Promise.all(issuers.map((i) => readyz(i.url, dirs)))));
          await unavailable;
        },
      }),
    );
    await Promise.all([load, restarted]);
    expect(red).toEqual([503, 503]);
    expect(retried['store_unavailable'], JSON.stringify(retried)).toBeGreaterThan(0);
    for (const i of issuers) {
      expect(i.proc.exitCode).toBe(null);
      await until(async () => (await readyz(i.url, dirs)) === 200, 'a green /readyz');
    }
    for (const a of agents) expect(a.generation).toBe(1 + ROUNDS);

    // From the database: one certificate per request id, the one answered; no lock; one chain.
    const rows = pg
      .admin("SELECT request_id || '|' || serial FROM certificates WHERE request_id IS NOT NULL", 'sigil')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('|') as [string, string]);
    const byRequest = new Map<string, string[]>();
    for (const [rid, serial] of rows) byRequest.set(rid, [...(byRequest.get(rid) ?? []), serial]);
    for (const [rid, serial] of answered) expect(byRequest.get(rid), `request ${rid}`).toEqual([serial]);
    expect([...byRequest.values()].filter((s) => s.length > 1)).toEqual([]);
    expect(pg.admin('SELECT count(*) FROM instances WHERE locked', 'sigil').trim()).toBe('0');
    expect(pg.admin('SELECT DISTINCT generation FROM instances', 'sigil').trim()).toBe(String(1 + ROUNDS));
    const stores = openPostgresIssuerStores(url, readAuditKey(paths(dirs.dirs[0]!).auditKey));
    try {
      expect(await stores.audit.verify()).toMatchObject({ ok: true });
    } finally {
      await stores.close();
    }
    process.stdout.write(`restart mid-load: ${done} renewals, retries ${JSON.stringify(retried)}\n`);
  });
});
