/**
 * Several issuers, one truth (issue #15): three REAL issuer processes (`sigil server start` from
 * dist/) on one PostgreSQL database, started from copies of one data directory. Requests are
 * built and sent from the test (the agent's own request builders, raw HTTPS), spread over the
 * three issuers at once:
 * - 20 joins with one token, round-robin over the issuers: exactly one wins, 19 token_reused;
 * - a request id retried against the other issuers gets the same stored answer (byte-identical);
 * - one renewal sent to all three at once: one certificate, generation advanced once; a clone
 *   still on the old generation, renewing at another issuer, locks the instance for all;
 * - the audit chain verifies after all of that, appended concurrently by the three processes;
 * - an issuer whose audit.key is not the one the database was claimed with is refused at start;
 * - a second `server init` on a claimed database is refused; credentials never reach the logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import type { Jws } from '../../src/protocol/jws.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { paths } from '../../src/server/data-dir.js';
import { openPostgresIssuerStores } from '../../src/server/data-dir-store.js';
import type { Stores } from '../../src/server/store/types.js';
import { SIGIL, sigil } from '../helpers/cli.js';
import { startPostgres, type Postgres } from '../helpers/postgres.js';
import { POLICY } from './harness.js';

interface Issuer {
  url: string;
  proc: ChildProcess;
  logs: string[];
}

/** `sigil server start` with `--store`; resolves once it listens, rejects with its log when it exits first. */
function startIssuerProcess(dataDir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Issuer> {
  const proc = spawn(
    process.execPath,
    [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...args],
    { env: { ...process.env, SIGIL_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const logs: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  proc.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${logs.join('')}`)), 60_000);
    const check = (): void => {
      const m = /listening on (https:\/\/\S+)/.exec(logs.join(''));
      if (m) {
        clearTimeout(t);
        resolve({ url: m[1]!, proc, logs });
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(Object.assign(new Error(`issuer exited ${code}: ${logs.join('')}`), { logs: logs.join('') }));
    });
  });
}

async function stopIssuer(i: Issuer): Promise<void> {
  if (i.proc.exitCode !== null || i.proc.signalCode !== null) return;
  const exited = new Promise((r) => i.proc.once('exit', r));
  i.proc.kill('SIGTERM');
  await exited;
}

function post(url: string, op: string, body: unknown, rootPem: string): Promise<{ status: number; json: any }> {
  const u = new URL(url);
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: u.hostname,
        port: u.port,
        path: `/v1/${op}`,
        method: 'POST',
        ca: rootPem,
        checkServerIdentity: () => undefined,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

const requestIdOf = (env: Jws): string =>
  JSON.parse(Buffer.from(env.payload, 'base64url').toString()).request_id as string;

describe('three issuer processes on one PostgreSQL database', () => {
  let pg: Postgres;
  let tmp: string;
  let url: string;
  let issuers: Issuer[] = [];
  let stores: Stores;
  let rootPem: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    pg = await startPostgres({ auth: 'password' });
    url = pg.url(pg.createDatabase('sigil'));
    tmp = mkdtempSync(join(tmpdir(), 'sigil-pg-multi-'));
    const first = join(tmp, 'issuer-a');
    const init = await sigil(['server', 'init', '--data-dir', first, '--trust-domain', 'example.org', '--store', url]);
    expect(init.code, init.stderr).toBe(0);
    // The other issuers: copies of the first data directory (same CA, audit key, admin credential).
    dirs.push(first);
    for (const name of ['issuer-b', 'issuer-c']) {
      const d = join(tmp, name);
      cpSync(first, d, { recursive: true });
      chmodSync(d, 0o700);
      dirs.push(d);
    }
    // a: password from the environment (the documented way); b, c: in the URL (must not be logged).
    const noPassword = url.replace(`:${pg.password}@`, '@');
    issuers = await Promise.all([
      startIssuerProcess(dirs[0]!, ['--store', noPassword], { PGPASSWORD: pg.password! }),
      startIssuerProcess(dirs[1]!, ['--store', url]),
      startIssuerProcess(dirs[2]!, ['--store', url]),
    ]);
    rootPem = readFileSync(paths(first).rootCert, 'utf8');
    // The test's own view of the database: a fourth client with the same audit key.
    stores = openPostgresIssuerStores(url, readAuditKey(paths(first).auditKey));
    await runAdminOp(stores, 'apply', { yaml: POLICY });
  }, 180_000);

  afterAll(async () => {
    await Promise.all(issuers.map(stopIssuer));
    await stores?.close();
    await pg?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  const newToken = async (): Promise<string> =>
    ((await runAdminOp(stores, 'token.create', { bot: 'gw' }, Date.now())) as { token: string }).token;

  async function joinRequest(token: string): Promise<{ envelope: Jws; signer: Signer }> {
    const agent = new TokenJoinAgent(token);
    const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
    return { envelope: built.envelope, signer: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)) };
  }

  it('20 joins with one token spread over 3 issuers: exactly one wins; its request id replayed elsewhere gets the same answer', async () => {
    const token = await newToken();
    const requests = await Promise.all(Array.from({ length: 20 }, () => joinRequest(token)));
    const answers = await Promise.all(requests.map((r, i) => post(issuers[i % 3]!.url, 'join', r.envelope, rootPem)));
    const won = answers.flatMap((a, i) => (a.status === 200 ? [i] : []));
    expect(won).toHaveLength(1);
    for (const a of answers.filter((x) => x.status !== 200)) {
      expect(a.status).toBe(401);
      expect(a.json.code).toBe('token_reused');
    }
    const winner = won[0]!;
    const first = answers[winner]!;
    const result = verifyResponse(first.json, 'join', requestIdOf(requests[winner]!.envelope), rootPem).result;
    expect((await stores.instances.list()).filter((i) => i.id === result.instance_id)).toHaveLength(1);

    // The lost-response retry, sent to the two issuers that did not answer it: the stored answer.
    for (const other of [1, 2].map((k) => issuers[(winner + k) % 3]!)) {
      const again = await post(other.url, 'join', requests[winner]!.envelope, rootPem);
      expect(again.status).toBe(200);
      expect(again.json.payload).toBe(first.json.payload);
    }
    expect(await stores.certificates.listByInstance(result.instance_id)).toHaveLength(1);
  });

  it('one renewal sent to all three issuers at once: one certificate, generation advanced once, the same answer everywhere', async () => {
    const { envelope, signer } = await joinRequest(await newToken());
    const joined = await post(issuers[0]!.url, 'join', envelope, rootPem);
    const id = verifyResponse(joined.json, 'join', requestIdOf(envelope), rootPem).result;
    const built = await buildRenewRequest({ current: signer, chainPem: id.chain, now: Date.now() });
    const answers = await Promise.all(issuers.map((i) => post(i.url, 'renew', built.envelope, rootPem)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(new Set(answers.map((a) => a.json.payload)).size).toBe(1);
    const renewed = verifyResponse(answers[0]!.json, 'renew', requestIdOf(built.envelope), rootPem).result;
    expect(renewed.generation).toBe(2);
    expect((await stores.certificates.listByInstance(id.instance_id)).map((c) => c.generation)).toEqual([1, 2]);
    expect(await stores.instances.get(id.instance_id)).toMatchObject({ generation: 2, locked: false });

    // A clone still holding generation 1 renews at another issuer: the shared generation counter
    // refuses it and locks the instance, for every issuer.
    const clone = await buildRenewRequest({ current: signer, chainPem: id.chain, now: Date.now() });
    const refused = await post(issuers[2]!.url, 'renew', clone.envelope, rootPem);
    expect(refused.json.code).toBe('generation_mismatch');
    expect(await stores.instances.get(id.instance_id)).toMatchObject({ locked: true });
    const next = await buildRenewRequest({
      current: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
      chainPem: renewed.chain,
      now: Date.now(),
    });
    expect((await post(issuers[1]!.url, 'renew', next.envelope, rootPem)).json.code).toBe('instance_locked');
  });

  it('the audit chain is one valid chain after concurrent appends from all three processes', async () => {
    const before = (await stores.audit.head())!.seq;
    const tokens = await Promise.all(Array.from({ length: 9 }, () => newToken()));
    const answers = await Promise.all(
      tokens.map(async (t, i) => post(issuers[i % 3]!.url, 'join', (await joinRequest(t)).envelope, rootPem)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(9).fill(200));
    const rows = await stores.audit.list();
    expect(rows.filter((r) => r.seq > before && r.action === 'join' && r.outcome === 'ok')).toHaveLength(9);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: rows.length }, (_, k) => k + 1));
    expect(await stores.audit.verify()).toEqual({ ok: true, rows: rows.length });
    // Every row from the first on is keyed with the one shared key (a process with another key would break it).
    expect(await stores.audit.keyInfo()).toMatchObject({ fromSeq: 1 });
  });

  it('refuses an issuer whose audit.key is not the one the database was claimed with', async () => {
    const d = join(tmp, 'issuer-foreign-key');
    cpSync(dirs[0]!, d, { recursive: true });
    chmodSync(d, 0o700);
    const own = JSON.parse(readFileSync(paths(d).auditKey, 'utf8')) as Record<string, unknown>;
    writeFileSync(paths(d).auditKey, JSON.stringify({ ...own, key: Buffer.alloc(32, 7).toString('base64') }) + '\n', {
      mode: 0o600,
    });
    const err = await startIssuerProcess(d, ['--store', url]).then(
      (i) => stopIssuer(i).then(() => new Error('started')),
      (e: Error & { logs?: string }) => e,
    );
    expect(err.message).toMatch(/config_invalid/);
    expect(err.message).toMatch(/audit key/);
    expect(err.message).not.toContain(pg.password!);
  });

  it('refuses a second init on a claimed database and a start without --store; never logs the password', async () => {
    const again = await sigil([
      'server',
      'init',
      '--data-dir',
      join(tmp, 'other'),
      '--trust-domain',
      'example.org',
      '--store',
      url,
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already_initialized/);
    expect(again.stderr).toContain('postgres://postgres:***@127.0.0.1');
    expect(again.stderr).not.toContain(pg.password!);
    const bare = await startIssuerProcess(dirs[0]!, []).then(
      (i) => stopIssuer(i).then(() => new Error('started')),
      (e: Error) => e,
    );
    expect(bare.message).toMatch(/config_invalid.*--store/s);
    const down = await sigil([
      'server',
      'init',
      '--data-dir',
      join(tmp, 'down'),
      '--trust-domain',
      'example.org',
      '--store',
      `postgres://sigil:${pg.password}@127.0.0.1:1/sigil`,
    ]);
    expect(down.stderr).toMatch(/store_unavailable/);
    expect(down.stderr).not.toContain(pg.password!);
    // `sigil ctl` in local mode finds the state through $SIGIL_STORE.
    const ls = await sigil(['ctl', '--data-dir', dirs[1]!, 'instances', 'ls', '--format', 'json'], {
      env: { SIGIL_STORE: url },
    });
    expect(ls.code, ls.stderr).toBe(0);
    expect((JSON.parse(ls.stdout) as unknown[]).length).toBe((await stores.instances.list()).length);
    // The running issuers (two were given the password in the URL) logged the redacted form only.
    for (const i of issuers) {
      const log = i.logs.join('');
      expect(log).toContain('"store":"postgres://postgres');
      expect(log).not.toContain(pg.password!);
    }
  });
});
