/**
 * Failover to a promoted streaming standby (issue #15), real processes throughout: a PostgreSQL
 * primary, a streaming standby made from it with `pg_basebackup -R` (test/helpers/postgres-replica.ts),
 * and two issuer processes started ONCE with the multi-host URL
 *
 *   postgres://…@127.0.0.1:<standby>,127.0.0.1:<primary>/sigil?target_session_attrs=read-write
 *
 * The standby is listed FIRST: while it is a standby the issuers must skip it (it would refuse
 * every write, and a standby that is not caught up would answer reads with stale state), so the
 * renewals before the failover prove `read-write` is honoured. Then the primary is stopped and
 * the standby promoted (`pg_ctl promote`): without being restarted, both issuers answer renewals
 * again within 10 s of the promotion (measured per issuer, retrying on the retryable 503
 * `store_unavailable` as an agent does); `/readyz` is green on both; the audit chain written across
 * the failover verifies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
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
import { startStandby, type Standby } from '../helpers/postgres-replica.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';
import { POLICY } from '../integration/harness.js';

let primary: Postgres;
let standby: Standby;
let url: string;
let dirs: IssuerDirs;
let issuers: IssuerProc[] = [];
let agents: TestAgent[] = [];

beforeAll(async () => {
  primary = await startPostgres({ auth: 'password' });
  primary.createDatabase('sigil');
  standby = await startStandby(primary);
  const pw = encodeURIComponent(primary.password!);
  url = `postgres://postgres:${pw}@127.0.0.1:${standby.port},127.0.0.1:${primary.port}/sigil?target_session_attrs=read-write`;
  dirs = await initIssuerDirs(url, 2);
  issuers = await Promise.all(dirs.dirs.map((d) => startIssuerProcess(d, url)));
  await adminCall(issuers[0]!.url, dirs, 'apply', { yaml: POLICY });
  agents = await Promise.all(
    issuers.map(async (i) => {
      const { token } = await adminCall(i.url, dirs, 'token.create', { bot: 'gw' });
      return TestAgent.join(i.url, dirs, token);
    }),
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(issuers.map((i) => i.stop()));
  await standby?.stop();
  await primary?.stop();
  dirs?.cleanup();
}, 60_000);

describe('a streaming standby promoted after the primary is stopped', () => {
  it('the issuers skip the standby while it is one (read-write only), and reach it within 10 s of its promotion, without a restart', async () => {
    // Before: the standby, first in the URL, is skipped; every write goes to the primary.
    for (let round = 0; round < 2; round++) await Promise.all(agents.map((a, k) => a.renew(issuers[k]!.url)));
    expect(standby.admin('SELECT pg_is_in_recovery()').trim()).toBe('t');
    // The standby has replayed what the issuers wrote (streaming): the instances are there.
    const deadline = Date.now() + 10_000;
    while (standby.admin('SELECT count(*) FROM instances', 'sigil').trim() !== '2') {
      if (Date.now() > deadline) throw new Error('the standby did not catch up');
      await new Promise((r) => setTimeout(r, 50));
    }

    await primary.stop();
    const promoteMs = standby.promote();
    const promotedAt = performance.now();
    expect(standby.admin('SELECT pg_is_in_recovery()').trim()).toBe('f');

    // Each issuer, as an agent would: the same renewal retried while it answers a retryable error.
    const recovered = await Promise.all(
      agents.map(async (a, k) => {
        const issuer = issuers[k]!;
        const codes: Record<string, number> = {};
        for (;;) {
          try {
            await a.renew(issuer.url);
            return { ms: performance.now() - promotedAt, codes };
          } catch (e) {
            if (!(e instanceof SigilError) || !e.retryable) throw e;
            codes[e.code] = (codes[e.code] ?? 0) + 1;
            if (performance.now() - promotedAt > 30_000)
              throw new Error(`issuer ${k + 1} did not recover: ${e.message}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }),
    );
    process.stdout.write(
      `pg_ctl promote took ${promoteMs.toFixed(0)} ms; first renewal after it: ${recovered
        .map((r, k) => `issuer ${k + 1} ${r.ms.toFixed(0)} ms (retried ${JSON.stringify(r.codes)})`)
        .join(', ')}\n`,
    );
    for (const r of recovered) expect(r.ms).toBeLessThan(10_000);
    // Both serve, and say so to a load balancer; no issuer process was restarted.
    for (const i of issuers) {
      expect(i.proc.exitCode).toBe(null);
      expect(await readyz(i.url, dirs)).toBe(200);
    }
    await Promise.all(agents.map((a, k) => a.renew(issuers[(k + 1) % 2]!.url)));
    for (const a of agents) expect(a.generation).toBe(5);

    // The chain written before and after the failover is one valid chain, on the new primary.
    const stores = openPostgresIssuerStores(standby.url('sigil'), readAuditKey(paths(dirs.dirs[0]!).auditKey));
    try {
      expect(await stores.audit.verify()).toMatchObject({ ok: true });
      expect(await stores.instances.list()).toHaveLength(2);
    } finally {
      await stores.close();
    }
  });
});
