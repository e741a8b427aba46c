/**
 * `sigil server start --workers N` (issue #15; src/server/cluster.ts), real processes on a real
 * PostgreSQL:
 * - with --workers 2 both workers serve renewals through the one listening address (each worker
 *   has its own serving key, so the certificate that signed each answer says which one answered);
 * - a worker killed with SIGKILL is started again by the primary, and renewals keep completing
 *   (an agent's retry covers the one connection the kill cut);
 * - SIGTERM to the primary stops every worker and the primary exits 0;
 * - an operator signed in to the fleet view through one worker is signed in on the other (the
 *   sessions are in the database, sealed with audit.key), and signed out on both;
 * - on SQLite --workers 2 is refused with a message saying why and what to use.
 */
import { spawnSync } from 'node:child_process';
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigilError } from '../../src/errors.js';
import { sigil } from '../helpers/cli.js';
import {
  adminCall,
  initIssuerDirs,
  startIssuerProcess,
  TestAgent,
  type IssuerDirs,
  type IssuerProc,
} from '../helpers/postgres-issuers.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';
import { POLICY } from '../integration/harness.js';

let pg: Postgres;
let url: string;
let dirs: IssuerDirs;
let issuer: IssuerProc;
let agent: TestAgent;

/** The worker pids the primary announced ("worker k (pid P) listening"), newest per slot. */
function workerPids(): Map<number, number> {
  const pids = new Map<number, number>();
  for (const m of issuer.logs.join('').matchAll(/worker (\d+) \(pid (\d+)\) listening/g))
    pids.set(Number(m[1]), Number(m[2]));
  return pids;
}

async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${issuer.logs.join('')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One connection that only asks /healthz: the next connection goes to the other worker (round robin). */
function poke(): Promise<void> {
  const u = new URL(issuer.url);
  return new Promise((resolve, reject) =>
    https
      .get(
        {
          host: u.hostname,
          port: u.port,
          path: '/healthz',
          ca: dirs.rootPem,
          checkServerIdentity: () => undefined,
          agent: false,
        },
        (r) => {
          r.resume();
          r.on('end', resolve);
        },
      )
      .on('error', reject),
  );
}

/**
 * Renew, resending after a retryable failure as an agent does. A renewal opens two connections
 * (the agent's client checks the bundle first), so with strict round robin every renewal would
 * land on the same worker: every other one is shifted by one extra connection.
 */
async function renew(i: number): Promise<{ answeredBy: string }> {
  if (i % 2 === 1) await poke();
  for (let attempt = 1; ; attempt++) {
    try {
      return await agent.renew(issuer.url);
    } catch (e) {
      const retryable =
        e instanceof SigilError ? e.retryable : /ECONNRESET|socket hang up|ECONNREFUSED/.test(String(e));
      if (!retryable || attempt > 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** One request on a fresh connection (so round robin hands it to the next worker): status, headers, body. */
function uiRequest(
  method: 'GET' | 'POST',
  path: string,
  o: { cookie?: string; form?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(issuer.url);
  const body = o.form ? new URLSearchParams(o.form).toString() : undefined;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        method,
        host: u.hostname,
        port: u.port,
        path,
        ca: dirs.rootPem,
        checkServerIdentity: () => undefined,
        agent: false,
        headers: {
          ...(o.cookie ? { cookie: o.cookie } : {}),
          ...(body !== undefined
            ? { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) }
            : {}),
        },
      },
      (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => (text += d));
        r.on('end', () => resolve({ status: r.statusCode!, headers: r.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  pg = await startPostgres({ auth: 'password' });
  url = pg.url(pg.createDatabase('sigil'));
  dirs = await initIssuerDirs(url, 1);
  issuer = await startIssuerProcess(dirs.dirs[0]!, url, {
    args: ['--workers', '2'],
    // Ready once the primary has announced both workers.
    readyPattern: /worker \d \(pid \d+\) listening on (https:\/\/\S+)[\s\S]*worker \d \(pid \d+\) listening on/,
  });
  await adminCall(issuer.url, dirs, 'apply', { yaml: POLICY });
  const { token } = await adminCall(issuer.url, dirs, 'token.create', { bot: 'gw' });
  agent = await TestAgent.join(issuer.url, dirs, token);
}, 120_000);

afterAll(async () => {
  await issuer?.stop();
  await pg?.stop();
  dirs?.cleanup();
}, 60_000);

describe('sigil server start --workers 2 on PostgreSQL', () => {
  it('both workers serve renewals through the one address', async () => {
    const by = new Set<string>();
    for (let i = 0; i < 10; i++) by.add((await renew(i)).answeredBy);
    expect(by.size).toBe(2);
    expect(workerPids().size).toBe(2);
    // Started without --public-url on a shared store: each worker says its tokens' iss is its own.
    expect(issuer.logs.join('')).toContain('a shared store without --public-url');
  });

  it('an operator signed in through one worker is signed in on both, and signed out on both', async () => {
    const signIn = await uiRequest('POST', '/ui/sign-in', { form: { token: dirs.adminToken, next: '/ui/' } });
    expect(signIn.status, signIn.body).toBe(303);
    const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
    expect(cookie).toMatch(/^__Host-sigil-session=.{43}$/);
    // Fresh connections alternate between the two workers: every page is served, none bounces to sign-in.
    const pages = [];
    for (let i = 0; i < 6; i++) pages.push(await uiRequest('GET', '/ui/', { cookie }));
    expect(pages.map((p) => p.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const csrf = /name="csrf" value="([^"]+)"/.exec(pages[0]!.body)?.[1];
    expect(csrf).toBeDefined();
    const out = await uiRequest('POST', '/ui/sign-out', { cookie, form: { csrf: csrf! } });
    expect(out.status, out.body).toBe(303);
    for (let i = 0; i < 2; i++) {
      const after = await uiRequest('GET', '/ui/', { cookie });
      expect(after.status).toBe(303);
      expect(after.headers.location).toContain('/ui/sign-in');
    }
  });

  it('a worker killed with SIGKILL is started again, and renewals keep completing on both', async () => {
    const before = workerPids();
    const victim = before.get(1)!;
    process.kill(victim, 'SIGKILL');
    await waitFor(
      () => /worker 1 \(pid \d+\) died \(SIGKILL\); starting it again/.test(issuer.logs.join('')),
      'the restart',
    );
    await waitFor(() => workerPids().get(1) !== victim, 'worker 1 listening again');
    const by = new Set<string>();
    for (let i = 0; i < 10; i++) by.add((await renew(i)).answeredBy);
    expect(by.size).toBe(2);
    expect(agent.generation).toBe(21);
  });

  it('SIGTERM to the primary stops every worker; the primary exits 0', async () => {
    const pids = [...workerPids().values()];
    const exited = new Promise<number | null>((r) => issuer.proc.once('exit', (code) => r(code)));
    issuer.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) expect(spawnSync('kill', ['-0', String(pid)]).status, `worker ${pid} gone`).not.toBe(0);
  });
});

describe('workers that cannot start', () => {
  it('are not restarted forever: the supervisor gives up with an error after repeated deaths', async () => {
    // A copy of the data directory pointed at a database that does not exist: every worker
    // refuses at start (config_invalid), is replaced, refuses again.
    const r = await sigil(
      ['server', 'start', '--data-dir', dirs.dirs[0]!, '--listen', '127.0.0.1:0', '--workers', '2'],
      { env: { SIGIL_STORE: pg.url('no_such_db') }, timeoutMs: 90_000 },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/issuer workers died 5 times within 60 s/);
    expect(r.stdout).toMatch(/died \(exit \d+\); starting it again/);
  }, 120_000);
});

describe('--workers on SQLite', () => {
  it('is refused, saying why and what to use', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-workers-sqlite-'));
    try {
      const init = await sigil(['server', 'init', '--data-dir', join(dir, 'd'), '--trust-domain', 'example.org']);
      expect(init.code).toBe(0);
      const r = await sigil(
        ['server', 'start', '--data-dir', join(dir, 'd'), '--listen', '127.0.0.1:0', '--workers', '2'],
        {
          env: { SIGIL_STORE: '' },
        },
      );
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/config_invalid.*--workers 2 needs --store postgres/);
      const zero = await sigil([
        'server',
        'start',
        '--data-dir',
        join(dir, 'd'),
        '--listen',
        '127.0.0.1:0',
        '--workers',
        '0',
      ]);
      expect(zero.stderr).toMatch(/config_invalid.*--workers must be a whole number from 1 to 64, got "0"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
