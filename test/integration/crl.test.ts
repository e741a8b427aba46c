import 'reflect-metadata';
/**
 * The CRL for relying parties (issue #16; docs/crl.md), against real consumers: a running
 * IssuerService, two machines joined over HTTPS, one locked — then GET /v1/crl and
 * `sigil ctl ca crl`, checked with `openssl verify -crl_check` (and `-crl_check_all` with a
 * root CRL), a real mosquitto with `crlfile` and a real PostgreSQL with `ssl_crl_file`, each of
 * which refuses a TLS client presenting the locked instance's certificate and accepts the other's. Unlocking takes the certificate off the next CRL; cRLNumber only grows; a
 * generation_mismatch lock (made inside renewal) is picked up without any hook in that code.
 */
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { crlPem, summarizeCrl } from '../../src/server/crl/ctl.js';
import { initDataDir, paths } from '../../src/server/data-dir.js';
import { IssuerService } from '../../src/server/service.js';
import { createLogger } from '../../src/util/log.js';
import { ROOT } from '../helpers/cli.js';
import { freePort, issueBrokerCert, MOSQUITTO, requireMosquitto } from '../helpers/mosquitto.js';
import { psql, startPostgres, type Postgres } from '../helpers/postgres.js';
import { POLICY } from './harness.js';

const exec = promisify(execFile);

/** An empty CRL of the root, as docs/crl.md has operators make it once with the (offline) root key. */
const ROOT_CRL_CNF =
  '[ca]\ndefault_ca = root\n[root]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 365\n';
const ROOT_CRL_ARGS = (dir: string): string[] => [
  'ca',
  '-config',
  'root-crl.cnf',
  '-gencrl',
  '-keyfile',
  paths(dir).rootKey,
  '-cert',
  paths(dir).rootCert,
];

/** Poll `ok` (an observable outcome, not a sleep) until it holds or `ms` passed. */
async function waitUntil(ok: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const work = mkdtempSync(join(tmpdir(), 'sigil-crl-'));
const dataDir = join(work, 'issuer');
let svc: IssuerService;
let rootPem: string;
let intermediatePem: string;

interface Machine {
  id: string;
  signer: Signer;
  chainPem: string[];
  certFile: string;
  keyFile: string;
}
let locked: Machine; // the one we lock
let fine: Machine; // the one that stays usable

function get(path: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  const u = new URL(svc.url);
  return new Promise((resolve, reject) => {
    https
      .get(
        { host: u.hostname, port: u.port, path, ca: rootPem, checkServerIdentity: () => undefined, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      )
      .on('error', reject);
  });
}

function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const u = new URL(svc.url);
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: 'POST',
        ca: rootPem,
        checkServerIdentity: () => undefined,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': data.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

async function joinMachine(name: string): Promise<Machine> {
  const { token } = (await runAdminOp(svc.ctx.stores, 'token.create', { bot: 'gw' })) as { token: string };
  const agent = new TokenJoinAgent(token);
  const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
  const res = await post('/v1/join', built.envelope);
  expect(res.status, JSON.stringify(res.json)).toBe(200);
  const payload = verifyResponse(res.json, 'join', built.entry.requestId, rootPem);
  const signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
  const certFile = join(work, `${name}.pem`);
  const keyFile = join(work, `${name}.key`);
  writeFileSync(certFile, payload.result.chain.join(''));
  writeFileSync(keyFile, (signer as SoftwareSigner).toPkcs8Pem(), { mode: 0o600 });
  return { id: payload.result.instance_id, signer, chainPem: payload.result.chain, certFile, keyFile };
}

/** The CRL served now, parsed, and written as PEM for the tools. */
async function servedCrl(file = join(work, 'crl.pem')): Promise<{ crl: x509.X509Crl; file: string; der: Buffer }> {
  const r = await get('/v1/crl');
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toBe('application/pkix-crl');
  writeFileSync(file, crlPem(r.body));
  return { crl: new x509.X509Crl(r.body), file, der: r.body };
}

const serialOf = (m: Machine): string => new X509Certificate(m.chainPem[0]!).serialNumber.toLowerCase();
const listed = (crl: x509.X509Crl): string[] => crl.entries.map((e) => e.serialNumber.toLowerCase());
const crlNumber = (der: Buffer): bigint => BigInt(summarizeCrl(der).crl_number);

/** `openssl verify -crl_check` of a machine's leaf: exit code and output. */
async function opensslVerify(m: Machine, crlFile: string): Promise<{ ok: boolean; out: string }> {
  const leaf = join(work, 'leaf.pem');
  writeFileSync(leaf, m.chainPem[0]!);
  const args = ['verify', '-crl_check', '-CRLfile', crlFile, '-CAfile', paths(dataDir).rootCert];
  args.push('-untrusted', paths(dataDir).intCert, leaf);
  try {
    const r = await exec('openssl', args);
    return { ok: true, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  initDataDir(dataDir, 'example.org');
  rootPem = readFileSync(paths(dataDir).rootCert, 'utf8');
  intermediatePem = readFileSync(paths(dataDir).intCert, 'utf8');
  svc = IssuerService.open(
    {
      dataDir,
      host: '127.0.0.1',
      port: 0,
      audit: { checkpointIntervalMs: 600_000 },
      crl: { refreshMs: 60_000, watchMs: 100 },
    },
    createLogger({ name: 'test', level: 'silent' }),
  );
  await svc.start();
  await runAdminOp(svc.ctx.stores, 'apply', { yaml: POLICY });
  locked = await joinMachine('locked');
  fine = await joinMachine('fine');
}, 60_000);

afterAll(async () => {
  await svc?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('GET /v1/crl and openssl verify -crl_check', () => {
  it('serves a CRL signed by the intermediate, listing nothing before any lock', async () => {
    const { crl, file, der } = await servedCrl();
    expect(listed(crl)).toEqual([]);
    expect(await crl.verify({ publicKey: new x509.X509Certificate(intermediatePem).publicKey })).toBe(true);
    expect(crl.issuer).toBe(new x509.X509Certificate(intermediatePem).subject);
    // nextUpdate = thisUpdate(+60 s back-dating) + 2 × crl_refresh
    expect(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime()).toBe(2 * 60_000 + 60_000);
    expect(crlNumber(der)).toBeGreaterThan(0n);
    // openssl parses it and checks its signature with the intermediate.
    const v = await exec('openssl', ['crl', '-in', file, '-noout', '-CAfile', paths(dataDir).intCert]);
    expect(v.stderr).toMatch(/verify OK/);
    expect((await opensslVerify(locked, file)).ok).toBe(true);
  });

  it('a lock puts the instance’s live certificates on the next CRL: openssl refuses it, accepts the other', async () => {
    const before = crlNumber((await servedCrl()).der);
    await runAdminOp(svc.ctx.stores, 'lock', { target: locked.id, reason: 'incident 4711' });
    // No notification: the publisher sees the lock in the audit log before it answers.
    const { crl, file, der } = await servedCrl();
    expect(listed(crl)).toEqual([serialOf(locked)]);
    expect(crl.entries[0]!.reason).toBe(x509.X509CrlReason.certificateHold);
    expect(crlNumber(der)).toBeGreaterThan(before);
    const refused = await opensslVerify(locked, file);
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/certificate revoked/);
    expect((await opensslVerify(fine, file)).ok).toBe(true);
  });

  it('for whole-chain checkers (nginx ssl_crl, PostgreSQL ssl_crl_file: CRL_CHECK_ALL) with a root CRL beside it', async () => {
    // The documented procedure (docs/crl.md): an empty CRL of the root, made once with the
    // (offline) root key by `openssl ca -gencrl`, concatenated with Sigil's.
    const rc = mkdtempSync(join(work, 'root-crl-'));
    writeFileSync(join(rc, 'root-crl.cnf'), ROOT_CRL_CNF);
    writeFileSync(join(rc, 'index.txt'), '');
    writeFileSync(join(rc, 'crlnumber'), '01\n');
    await exec('openssl', [...ROOT_CRL_ARGS(dataDir), '-out', 'root.crl.pem'], { cwd: rc });
    const { file } = await servedCrl();
    const both = join(rc, 'sigil-crls.pem');
    writeFileSync(both, readFileSync(file, 'utf8') + readFileSync(join(rc, 'root.crl.pem'), 'utf8'));
    const all = async (m: Machine, crls: string): Promise<string> => {
      writeFileSync(join(rc, 'leaf.pem'), m.chainPem[0]!);
      const args = ['verify', '-crl_check_all', '-CRLfile', crls, '-CAfile', paths(dataDir).rootCert];
      args.push('-untrusted', paths(dataDir).intCert, join(rc, 'leaf.pem'));
      return exec('openssl', args).then(
        (r) => r.stdout,
        (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`,
      );
    };
    expect(await all(fine, both)).toMatch(/: OK/);
    expect(await all(locked, both)).toMatch(/certificate revoked/);
    // Without the root's CRL a whole-chain checker refuses everyone: say so in the docs, not in production.
    expect(await all(fine, file)).toMatch(/unable to get certificate CRL/);
  });

  it('the publisher’s timer writes it to DATA_DIR/crl/current.crl too', async () => {
    const served = (await servedCrl()).der;
    expect(readFileSync(join(dataDir, 'crl', 'current.crl')).equals(served)).toBe(true);
  });

  it('sigil ctl ca crl (local, and remote from GET /v1/crl) prints the same list as PEM', async () => {
    const run = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
      exec(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'ctl', ...args], { cwd: ROOT });
    const local = await run(['--data-dir', dataDir, 'ca', 'crl', '--format', 'json']);
    const doc = JSON.parse(local.stdout) as { revoked: Array<{ serial: string; instance: string; cause: string }> };
    expect(doc.revoked).toEqual([
      expect.objectContaining({ serial: serialOf(locked), instance: locked.id, cause: 'locked: incident 4711' }),
    ]);
    const out = join(work, 'ctl-remote.pem');
    await run(['--server', svc.url, '--data-dir', dataDir, 'ca', 'crl', '--out', out]);
    const remote = new x509.X509Crl(readFileSync(out, 'utf8'));
    expect(listed(remote)).toEqual([serialOf(locked)]);
    expect((await opensslVerify(locked, out)).ok).toBe(false);
  }, 60_000);
});

describe('mosquitto with crlfile', () => {
  let broker: { port: number; log(): string; reload(): void; stop(): Promise<void> } | undefined;
  afterAll(async () => broker?.stop());

  async function startBroker(
    crlFile: string,
  ): Promise<{ port: number; log(): string; reload(): void; stop(): Promise<void> }> {
    requireMosquitto();
    const dir = mkdtempSync(join(work, 'mosq-'));
    const port = await freePort();
    const server = issueBrokerCert(dataDir);
    const serverCert = join(dir, 'server.pem');
    const serverKey = join(dir, 'server.key');
    writeFileSync(serverCert, server.certPem);
    writeFileSync(serverKey, server.keyPem, { mode: 0o600 });
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, rootPem);
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        `cafile ${caFile}`,
        `certfile ${serverCert}`,
        `keyfile ${serverKey}`,
        `crlfile ${crlFile}`,
        'require_certificate true',
        'use_identity_as_username true',
        'allow_anonymous false',
        `log_dest file ${join(dir, 'mosquitto.log')}`,
        'log_type all',
        // As root (tests in a container), mosquitto would switch to a user that cannot read the temp dir.
        ...(process.getuid?.() === 0 ? ['user root'] : []),
      ].join('\n') + '\n',
    );
    const out = join(dir, 'stderr.log');
    const p = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', openSync(out, 'w'), openSync(out, 'a')] });
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const tick = (): void => {
        const s = netConnect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve()));
        s.once('error', () =>
          Date.now() - t0 > 10_000
            ? reject(
                new Error(
                  `mosquitto did not start: ${readFileSync(out, 'utf8')}${existsSync(join(dir, 'mosquitto.log')) ? readFileSync(join(dir, 'mosquitto.log'), 'utf8') : ''}`,
                ),
              )
            : setTimeout(tick, 100),
        );
      };
      tick();
    });
    return {
      port,
      log: () => readFileSync(join(dir, 'mosquitto.log'), 'utf8') + readFileSync(out, 'utf8'),
      reload: () => void p.kill('SIGHUP'),
      stop: () =>
        new Promise((resolve) => {
          p.once('exit', () => resolve());
          p.kill('SIGTERM');
        }),
    };
  }

  /** Connect over TLS with a machine's certificate: 'connected' or the error mosquitto's TLS gave. */
  function connectAs(m: Machine, port: number): Promise<string> {
    return new Promise((resolve) => {
      const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
        ca: rootPem + intermediatePem,
        cert: m.chainPem.join(''),
        key: readFileSync(m.keyFile),
        rejectUnauthorized: false,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        protocolVersion: 5,
      });
      c.once('connect', () => {
        c.end(true);
        resolve('connected');
      });
      c.once('error', (e) => {
        c.end(true);
        resolve(`error: ${e.message}`);
      });
      c.once('close', () => resolve('closed'));
    });
  }

  it('refuses the TLS client presenting the locked instance’s certificate and accepts the other', async () => {
    await runAdminOp(svc.ctx.stores, 'lock', { target: locked.id, reason: 'incident 4711' }); // (already, in file order)
    const { crl, file } = await servedCrl(join(work, 'mosquitto-crl.pem'));
    expect(listed(crl)).toEqual([serialOf(locked)]);
    broker = await startBroker(file);
    expect(await connectAs(fine, broker.port)).toBe('connected');
    // mosquitto's OpenSSL says why: TLS alert 44, certificate_revoked (RFC 8446 §6.2).
    expect(await connectAs(locked, broker.port)).toMatch(/alert certificate revoked/);
    // Unlocked: the next CRL, put in place and loaded with SIGHUP (mosquitto >= 2.0 reloads
    // listener certificates and CRLs on it), lets the machine in again.
    await runAdminOp(svc.ctx.stores, 'unlock', { target: locked.id });
    const next = await servedCrl(join(work, 'mosquitto-crl.pem'));
    expect(listed(next.crl)).toEqual([]);
    broker.reload();
    await waitUntil(async () => (await connectAs(locked, broker!.port)) === 'connected', 10_000);
    await runAdminOp(svc.ctx.stores, 'lock', { target: locked.id, reason: 'incident 4711' });
  }, 30_000);
});

describe('PostgreSQL with ssl_crl_file (a whole-chain checker)', () => {
  let pg: Postgres | undefined;
  afterAll(async () => pg?.stop());

  /** psql as the machine: its CN (the instance id) is the role (pg_hba `cert clientcert=verify-full`). */
  async function psqlAs(m: Machine): Promise<string> {
    const r = await psql(
      `host=127.0.0.1 port=${pg!.port} dbname=postgres user=${m.id} sslmode=verify-ca sslrootcert=${paths(dataDir).rootCert} sslcert=${m.certFile} sslkey=${m.keyFile}`,
      'SELECT 1',
    );
    return r.code === 0 ? r.stdout.trim() : r.stderr;
  }

  it('refuses the locked instance’s client certificate, accepts the other (Sigil CRL + root CRL)', async () => {
    const server = issueBrokerCert(dataDir);
    pg = await startPostgres({ serverCertPem: server.certPem, serverKeyPem: server.keyPem, clientCaPem: rootPem });
    for (const m of [locked, fine]) pg.admin(`CREATE ROLE "${m.id}" LOGIN`);
    await runAdminOp(svc.ctx.stores, 'lock', { target: locked.id, reason: 'incident 4711' });
    // A file the postgres user can read: Sigil's CRL and the root's (docs/crl.md), concatenated.
    const pub = mkdtempSync(join(tmpdir(), 'sigil-crl-pg-'));
    chmodSync(pub, 0o755);
    const rc = mkdtempSync(join(work, 'pg-root-crl-'));
    writeFileSync(join(rc, 'root-crl.cnf'), ROOT_CRL_CNF);
    writeFileSync(join(rc, 'index.txt'), '');
    writeFileSync(join(rc, 'crlnumber'), '01\n');
    await exec('openssl', [...ROOT_CRL_ARGS(dataDir), '-out', 'root.crl.pem'], { cwd: rc });
    const crlFile = join(pub, 'crls.pem');
    const { file } = await servedCrl();
    writeFileSync(crlFile, readFileSync(file, 'utf8') + readFileSync(join(rc, 'root.crl.pem'), 'utf8'), {
      mode: 0o644,
    });
    try {
      expect(await psqlAs(locked)).toBe('1'); // before the CRL is configured
      pg.admin(`ALTER SYSTEM SET ssl_crl_file = '${crlFile}'`);
      pg.admin('SELECT pg_reload_conf()');
      await waitUntil(async () => (await psqlAs(locked)) !== '1', 10_000);
      expect(await psqlAs(locked)).toMatch(/certificate revoked/);
      expect(await psqlAs(fine)).toBe('1');
    } finally {
      rmSync(pub, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('unlock, and locks made elsewhere', () => {
  it('unlock: the next CRL no longer lists the instance, with a higher cRLNumber', async () => {
    await runAdminOp(svc.ctx.stores, 'lock', { target: locked.id, reason: 'incident 4711' }); // (already, in file order)
    const before = crlNumber((await servedCrl()).der);
    await runAdminOp(svc.ctx.stores, 'unlock', { target: locked.id });
    const { crl, file, der } = await servedCrl();
    expect(listed(crl)).toEqual([]);
    expect(crlNumber(der)).toBeGreaterThan(before);
    expect((await opensslVerify(locked, file)).ok).toBe(true);
  });

  it('a generation_mismatch lock made by renewal is on the next CRL, with both generations’ certificates', async () => {
    // Renew `fine` once (generation 2), then present the generation-1 certificate again.
    const old = { signer: fine.signer, chainPem: fine.chainPem };
    const built = await buildRenewRequest({ current: old.signer, chainPem: old.chainPem, now: Date.now() });
    const renewed = await post('/v1/renew', built.envelope);
    expect(renewed.status).toBe(200);
    const newLeaf = verifyResponse(renewed.json, 'renew', built.entry.requestId, rootPem).result.chain[0]!;
    const replay = await buildRenewRequest({ current: old.signer, chainPem: old.chainPem, now: Date.now() });
    const refused = await post('/v1/renew', replay.envelope);
    expect(refused.json.code).toBe('generation_mismatch');
    const { crl } = await servedCrl();
    const serials = [serialOf(fine), new X509Certificate(newLeaf).serialNumber.toLowerCase()].sort();
    expect(listed(crl)).toEqual(serials);
  });

  it('rate limits GET /v1/crl per source (429 with Retry-After)', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await get('/v1/crl')).status);
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
  });
});
