/**
 * An in-process issuer context with the fleet view on a fastify app (no TLS, `inject` only) and
 * instances written straight into the store — for the route tests. The browser tests
 * (test/e2e/fleet-ui.test.ts) run the real issuer process.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../../src/server/issuer.js';
import { FleetUi } from '../../../src/server/ui/fleet-ui.js';
import { registerFleetUi } from '../../../src/server/ui/routes.js';
import { buildHttpsServer } from '../../../src/transport/https/server.js';
import { silentLogger } from '../../../src/util/log.js';

export interface UiRig {
  dir: string;
  ctx: IssuerContext;
  ui: FleetUi;
  app: FastifyInstance;
  adminToken: string;
  clock: { offsetMs: number };
  addInstance(o: { id: string; bot?: string; facts?: Record<string, unknown> }): Promise<void>;
  close(): Promise<void>;
}

export async function startUiRig(o: { idleMs?: number } = {}): Promise<UiRig> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-ui-'));
  initDataDir(dir, 'example.org');
  const stores = openIssuerStores(dir);
  const clock = { offsetMs: 0 };
  const ctx = createIssuerContext({
    ca: loadCaMaterial(dir),
    stores,
    log: silentLogger(),
    now: () => Date.now() + clock.offsetMs,
  });
  await runAdminOp(stores, 'apply', {
    yaml: 'kind: role\nname: edge\nspec: { max_ttl: 24h }\n---\nkind: bot\nname: gw\nspec: { roles: [edge] }\n',
  });
  const app = buildHttpsServer({ ctx, tls: false });
  const ui = new FleetUi(ctx, { dataDir: dir, session: { idleMs: o.idleMs ?? 60_000 } });
  registerFleetUi(app, ui);
  await app.ready();
  const addInstance: UiRig['addInstance'] = async ({ id, bot = 'gw', facts = {} }) => {
    const now = ctx.now();
    const serial = Buffer.from(id).toString('hex').slice(0, 30).padEnd(30, '0');
    await stores.withWriteTx(async (tx) => {
      await tx.instances.create({
        id,
        bot,
        joinMethod: 'token',
        spiffeId: `spiffe://example.org/bot/${bot}/${id}`,
        generation: 1,
        facts,
        keyStorage: 'software',
        exportable: true,
        createdAt: now,
      });
      await tx.certificates.insert({
        serial,
        instanceId: id,
        bot,
        generation: 1,
        notBefore: now - 60_000,
        notAfter: now + 3600_000,
        kind: 'x509-svid',
        keyStorage: 'software',
        exportable: true,
        spkiHash: `sha256:${'0'.repeat(64)}`,
        requestId: `req-${id}`,
        issuedAt: now,
      });
      await tx.instances.recordIssue(id, {
        generation: 1,
        serial,
        notAfter: now + 3600_000,
        keyStorage: 'software',
        exportable: true,
        now,
      });
    });
  };
  return {
    dir,
    ctx,
    ui,
    app,
    adminToken: readFileSync(paths(dir).adminToken, 'utf8').trim(),
    clock,
    addInstance,
    close: async () => {
      await app.close();
      await stores.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A signed-in browser, as far as inject goes: the cookie and the CSRF token of the session. */
export interface Signed {
  cookie: string;
  csrf: string;
}

export async function signIn(rig: UiRig, token = rig.adminToken): Promise<Signed> {
  const r = await rig.app.inject({
    method: 'POST',
    url: '/ui/sign-in',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ token, next: '/ui/' }).toString(),
  });
  if (r.statusCode !== 303) throw new Error(`sign-in: ${r.statusCode} ${r.body}`);
  const cookie = String(r.headers['set-cookie']).split(';')[0]!;
  const page = await rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie } });
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
  if (!csrf) throw new Error('no CSRF token on the fleet page');
  return { cookie, csrf };
}

export function post(rig: UiRig, url: string, who: Signed | undefined, form: Record<string, string>, headers = {}) {
  return rig.app.inject({
    method: 'POST',
    url,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      ...(who ? { cookie: who.cookie } : {}),
      ...headers,
    },
    payload: new URLSearchParams(form).toString(),
  });
}
