/**
 * Issue #11 items 4, 5 and 6d against the real HTTPS adapter (fastify inject: the full route,
 * error handler and operation, no sockets): unauthenticated garbage must not grow the audit log,
 * the server log or the metric series without bound, attacker text is capped, and admin calls
 * are audited with their remote address, refused ones included.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../src/server/issuer.js';
import { flushRefusalSummaries } from '../../src/server/ops/refusal.js';
import type { Stores } from '../../src/server/store/types.js';
import { createLogger } from '../../src/util/log.js';
import { buildHttpsServer } from '../../src/transport/https/server.js';

const POLICY = 'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n';

describe('audit flood and admin auditing (issue #11)', () => {
  let dir: string;
  let stores: Stores;
  let ctx: IssuerContext;
  let app: FastifyInstance;
  let clock: number;
  const log = { lines: 0, bytes: 0, maxLine: 0 };

  beforeEach(async () => {
    dir = mkdtempSync(joinPath(tmpdir(), 'sigil-audit-flood-'));
    initDataDir(dir, 'example.org');
    stores = openIssuerStores(dir);
    await runAdminOp(stores, 'apply', { yaml: POLICY });
    Object.assign(log, { lines: 0, bytes: 0, maxLine: 0 });
    const logger = createLogger({
      name: 'sigil-server',
      level: 'info',
      pretty: false,
      destination: {
        write: (s: string) => (
          (log.lines += 1),
          (log.bytes += s.length),
          (log.maxLine = Math.max(log.maxLine, s.length))
        ),
      },
    });
    clock = Date.now();
    ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: logger, now: () => clock });
    // No per-source join rate limit here: this tests what reaches the operation.
    app = buildHttpsServer({ ctx, tls: false, limits: { joinRatePerS: 0, maxConnsPerSource: 0 } });
    await app.ready();
  });
  afterEach(async () => {
    await app.close();
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const auditRows = async (): Promise<number> => (await stores.audit.list()).length;
  const auditBytes = async (): Promise<number> =>
    (await stores.audit.list()).reduce((n, r) => n + JSON.stringify(r).length, 0);

  it('10k garbage join requests from one source: a bounded number of rows and log lines, then one summary', async () => {
    const rows0 = await auditRows();
    for (let i = 0; i < 10_000; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/join',
        payload: { [`junk${i}`]: i },
        remoteAddress: '203.0.113.7',
      });
      expect(res.statusCode).toBe(400);
    }
    const during = (await auditRows()) - rows0;
    // Before the fix: 10,000 rows and 10,000 warning lines.
    expect(during).toBeLessThanOrEqual(ctx.refusalSampler.opts.perKeyRows);
    expect(log.lines).toBeLessThanOrEqual(ctx.refusalSampler.opts.perKeyRows);
    expect(await flushRefusalSummaries(ctx)).toBe(1);
    const summary = (await stores.audit.list()).at(-1)!;
    expect(summary).toMatchObject({
      action: 'refusal_summary',
      outcome: 'refused',
      code: 'bad_request',
      remote: '203.0.113.7',
    });
    expect(summary.details).toMatchObject({ op: 'join', count: 10_000 - during, recorded: during });
    expect((await stores.audit.verify()).ok).toBe(true);
  }, 120_000);

  it('many sources: the keys held in memory and the rows per interval stay bounded', async () => {
    const rows0 = await auditRows();
    for (let i = 0; i < 3000; i++) {
      await app.inject({
        method: 'POST',
        url: '/v1/join',
        payload: { x: i },
        remoteAddress: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      });
    }
    const { maxKeys, maxRows } = ctx.refusalSampler.opts;
    expect(ctx.refusalSampler.size).toBeLessThanOrEqual(maxKeys + 1); // + the "other" source
    const summaries = await flushRefusalSummaries(ctx);
    expect((await auditRows()) - rows0).toBeLessThanOrEqual(maxRows + maxKeys + 1);
    expect(summaries).toBeGreaterThan(0);
  }, 60_000);

  it('a ~48 KB join payload of unknown keys: the audit row and the log line stay around 1 KB', async () => {
    // A JWS whose (unverified) payload carries thousands of made-up keys: the join schema quotes
    // every one of them in its error message.
    const built = await buildJoinRequest({ method: 'token', evidence: async () => ({}), now: clock });
    const env = built.envelope as unknown as { protected: string; payload: string; signature: string };
    const payload = JSON.parse(Buffer.from(env.payload, 'base64url').toString()) as Record<string, unknown>;
    for (let i = 0; i < 1500; i++) payload[`key_${i}_${'x'.repeat(i % 40 === 0 ? 300 : 1)}`] = 1;
    const body = { ...env, payload: Buffer.from(JSON.stringify(payload)).toString('base64url') };
    expect(JSON.stringify(body).length).toBeGreaterThan(40_000);
    const rows0 = await auditRows();
    const bytes0 = await auditBytes();
    const res = await app.inject({ method: 'POST', url: '/v1/join', payload: body, remoteAddress: '198.51.100.1' });
    expect(res.statusCode).toBe(400);
    expect((await auditRows()) - rows0).toBe(1);
    // Before the fix: ~41 KB per request in the audit log and the same again in the server log.
    expect((await auditBytes()) - bytes0).toBeLessThan(2048);
    expect(log.maxLine).toBeLessThan(2048);
    const message = (await stores.audit.list()).at(-1)!.details.message as string;
    expect(message.length).toBeLessThanOrEqual(1100);
    expect(message).toMatch(/^join request: /);
  });

  it('join method names from the payload do not become metric series', async () => {
    for (let i = 0; i < 200; i++) {
      const built = await buildJoinRequest({ method: `m${i}x`, evidence: async () => ({}), now: clock });
      const res = await app.inject({
        method: 'POST',
        url: '/v1/join',
        payload: built.envelope as object,
        remoteAddress: '192.0.2.9',
      });
      expect(res.json()).toMatchObject({ code: 'unknown_join_method' });
    }
    const series = ctx.metrics.registry
      .render()
      .split('\n')
      .filter((l) => l.startsWith('sigil_refusals_total{'));
    // Before the fix: 200 series, one per invented method name.
    expect(series).toEqual(['sigil_refusals_total{op="join",method="other",code="unknown_join_method"} 200']);
    expect(ctx.metrics.refusals.series).toBe(1);
  }, 60_000);

  it('an admin call with a wrong credential is audited with its remote address', async () => {
    const seq = (await stores.audit.list()).at(-1)!.seq;
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/bots.ls',
      headers: { authorization: 'Bearer nope' },
      payload: {},
      remoteAddress: '198.51.100.23',
    });
    expect(res.statusCode).toBe(401);
    const rows = (await stores.audit.list()).filter((r) => r.seq > seq);
    expect(rows.map((r) => [r.action, r.outcome, r.code, r.remote])).toEqual([
      ['admin', 'refused', 'unauthorized', '198.51.100.23'],
    ]);
  });

  it('authenticated admin calls: refused ones, changes and reads all carry the remote address', async () => {
    const token = readFileSync(paths(dir).adminToken, 'utf8').trim();
    const call = (op: string, payload: object) =>
      app.inject({
        method: 'POST',
        url: `/v1/admin/${op}`,
        headers: { authorization: `Bearer ${token}` },
        payload,
        remoteAddress: '198.51.100.42',
      });
    const seq = (await stores.audit.list()).at(-1)!.seq;
    expect((await call('apply', { yaml: 'kind: bot\nname: Bad_Name\nspec: { roles: [edge] }\n' })).statusCode).toBe(
      400,
    );
    expect((await call('lock', { target: 'gw', reason: 'test' })).statusCode).toBe(200);
    expect((await call('bots.ls', {})).statusCode).toBe(200);
    expect((await call('no.such.op', {})).statusCode).toBe(404);
    const rows = (await stores.audit.list()).filter((r) => r.seq > seq);
    expect(rows.map((r) => [r.action, r.outcome, r.code, r.remote, r.actor])).toEqual([
      ['admin', 'refused', 'policy_invalid', '198.51.100.42', 'admin'],
      ['lock', 'ok', null, '198.51.100.42', 'admin'],
      ['admin_call', 'ok', null, '198.51.100.42', 'admin'],
      ['admin', 'refused', 'not_found', '198.51.100.42', 'admin'],
    ]);
    expect(rows[0]!.details).toMatchObject({ op: 'apply' });
    expect(rows[2]!.details).toEqual({ op: 'bots.ls' });
  });

  it('audit.verify over the admin API answers from the chunked verifier', async () => {
    const token = readFileSync(paths(dir).adminToken, 'utf8').trim();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/audit.verify',
      headers: { authorization: `Bearer ${token}` },
      payload: {},
      remoteAddress: '198.51.100.42',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().result).toMatchObject({ ok: true, triggers_missing: [], problems: [] });
  });
});
