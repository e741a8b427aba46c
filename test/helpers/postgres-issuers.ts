/**
 * Several REAL issuer processes on one PostgreSQL database, for the scale-out e2e tests (issue
 * #15): `sigil server init --store` once, copies of that data directory for the others, each
 * started as `sigil server start` from the built dist/. Plus the two clients those tests drive:
 * the admin API (Bearer admin.token, the issuer root pinned) and an agent made of the agent's own
 * parts (request builders, HttpsIssuerClient, answers verified before the new key is adopted).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { SigilError } from '../../src/errors.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { paths } from '../../src/server/data-dir.js';
import { HttpsIssuerClient } from '../../src/transport/https/client.js';
import { SIGIL, sigilJson } from './cli.js';

export interface IssuerProc {
  url: string;
  proc: ChildProcess;
  logs: string[];
  dataDir: string;
  /** SIGTERM and wait (no-op when already gone). */
  stop(): Promise<void>;
}

/** `sigil server start` on `dataDir` with `store`; resolves once it listens. `args`: extra flags. */
export function startIssuerProcess(
  dataDir: string,
  store: string,
  o: { args?: string[]; env?: NodeJS.ProcessEnv; readyPattern?: RegExp } = {},
): Promise<IssuerProc> {
  const proc = spawn(
    process.execPath,
    [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--join-rate', '0', ...(o.args ?? [])],
    {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json', SIGIL_STORE: store, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };
  const ready = o.readyPattern ?? /listening on (https:\/\/\S+)/;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${logs.join('')}`)), 60_000);
    proc.stdout!.on('data', (d: Buffer) => {
      logs.push(d.toString());
      const m = ready.exec(logs.join(''));
      if (m) {
        clearTimeout(t);
        resolve({ url: m[1]!, proc, logs, dataDir, stop });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`issuer exited ${code}: ${logs.join('')}`));
    });
  });
}

export interface IssuerDirs {
  tmp: string;
  dirs: string[];
  pin: string;
  rootPem: string;
  adminToken: string;
  cleanup(): void;
}

/** `server init --store url` once, then `count - 1` copies of the data directory (docs/store-postgres.md "Setup"). */
export async function initIssuerDirs(url: string, count: number): Promise<IssuerDirs> {
  const tmp = mkdtempSync(join(tmpdir(), 'sigil-pg-issuers-'));
  const first = join(tmp, 'issuer-1');
  const pin = (
    await sigilJson<{ ca_pin: string }>([
      'server',
      'init',
      '--data-dir',
      first,
      '--trust-domain',
      'example.org',
      '--store',
      url,
    ])
  ).ca_pin;
  const dirs = [first];
  for (let k = 2; k <= count; k++) {
    const d = join(tmp, `issuer-${k}`);
    cpSync(first, d, { recursive: true });
    chmodSync(d, 0o700);
    dirs.push(d);
  }
  return {
    tmp,
    dirs,
    pin,
    rootPem: readFileSync(paths(first).rootCert, 'utf8'),
    adminToken: readFileSync(join(first, 'admin.token'), 'utf8').trim(),
    cleanup: () => rmSync(tmp, { recursive: true, force: true }),
  };
}

/** POST /v1/admin/<op> on one issuer; resolves with its `result`, rejects with the error body. */
export function adminCall(issuerUrl: string, dirs: IssuerDirs, op: string, args: unknown): Promise<any> {
  const u = new URL(issuerUrl);
  const body = JSON.stringify(args);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: u.hostname,
        port: u.port,
        path: `/v1/admin/${op}`,
        method: 'POST',
        ca: dirs.rootPem,
        checkServerIdentity: () => undefined,
        agent: false,
        headers: {
          authorization: `Bearer ${dirs.adminToken}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if (res.statusCode === 200) resolve(json.result);
          else reject(Object.assign(new Error(`${op}: ${res.statusCode} ${JSON.stringify(json)}`), { body: json }));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** GET /readyz on one issuer: its status code (0 when no answer within 5 s). */
export function readyz(issuerUrl: string, dirs: IssuerDirs): Promise<number> {
  const u = new URL(issuerUrl);
  return new Promise((resolve) => {
    https
      .get(
        {
          host: u.hostname,
          port: u.port,
          path: '/readyz',
          ca: dirs.rootPem,
          checkServerIdentity: () => undefined,
          agent: false,
          timeout: 5_000,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      )
      .on('error', () => resolve(0))
      .on('timeout', function (this: import('node:http').ClientRequest) {
        this.destroy();
      });
  });
}

/** One agent's identity, renewed against whichever issuer URL it is given. */
export class TestAgent {
  private constructor(
    private readonly rootPem: string,
    private readonly pin: string,
    public signer: Signer,
    public chain: string[],
    public generation: number,
    public lastTtlS: number,
    public readonly instanceId: string,
    public serial: string,
  ) {}

  static async join(issuerUrl: string, dirs: IssuerDirs, token: string): Promise<TestAgent> {
    const client = new HttpsIssuerClient({ url: issuerUrl, pin: dirs.pin, timeoutMs: 30_000 });
    try {
      const agent = new TokenJoinAgent(token);
      const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
      const r = verifyResponse(
        await client.post('join', built.envelope),
        'join',
        built.entry.requestId,
        dirs.rootPem,
      ).result;
      return new TestAgent(
        dirs.rootPem,
        dirs.pin,
        loadSigner(parseKeyRef(built.entry.pendingKeyRef!)),
        r.chain,
        r.generation,
        r.ttl_s,
        r.instance_id,
        r.serial,
      );
    } finally {
      client.close();
    }
  }

  /**
   * One renewal at `issuerUrl` (asking for `ttlS`); adopts the new key; rejects with the issuer's
   * SigilError. `answeredBy`: the SHA-256 of the certificate that signed the answer (each issuer
   * process has its own serving key, so this tells the processes behind one address apart).
   */
  async renew(
    issuerUrl: string,
    ttlS = 3600,
  ): Promise<{ ttl_s: number; generation: number; serial: string; answeredBy: string }> {
    const client = new HttpsIssuerClient({ url: issuerUrl, pin: this.pin, timeoutMs: 30_000 });
    try {
      const built = await buildRenewRequest({ current: this.signer, chainPem: this.chain, ttlS, now: Date.now() });
      const answer = (await client.post('renew', built.envelope)) as { protected: string };
      const header = JSON.parse(Buffer.from(answer.protected, 'base64url').toString('utf8')) as { x5c: string[] };
      const answeredBy = createHash('sha256').update(header.x5c[0]!).digest('hex');
      const r = verifyResponse(answer, 'renew', built.entry.requestId, this.rootPem).result;
      this.signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
      this.chain = r.chain;
      this.generation = r.generation;
      this.lastTtlS = r.ttl_s;
      this.serial = r.serial;
      return { ttl_s: r.ttl_s, generation: r.generation, serial: r.serial, answeredBy };
    } finally {
      client.close();
    }
  }

  /**
   * One renewal as the agent's outbox does it: the request is built once and resent byte for
   * byte (same request id) after every retryable failure, until answered (at most `maxMs`).
   * `onRetry` sees each retryable error. Resolves with the request id and the answered serial.
   */
  async renewResending(
    issuerUrl: string,
    onRetry: (e: SigilError) => void,
    maxMs = 60_000,
  ): Promise<{ requestId: string; serial: string }> {
    const built = await buildRenewRequest({ current: this.signer, chainPem: this.chain, now: Date.now() });
    const client = new HttpsIssuerClient({ url: issuerUrl, pin: this.pin, timeoutMs: 30_000 });
    const t0 = Date.now();
    try {
      for (;;) {
        let answer: unknown;
        try {
          answer = await client.post('renew', built.envelope);
        } catch (e) {
          if (!(e instanceof SigilError) || !e.retryable || Date.now() - t0 > maxMs) throw e;
          onRetry(e);
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 100));
          continue;
        }
        const r = verifyResponse(answer, 'renew', built.entry.requestId, this.rootPem).result;
        this.signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
        this.chain = r.chain;
        this.generation = r.generation;
        this.serial = r.serial;
        return { requestId: built.entry.requestId, serial: r.serial };
      }
    } finally {
      client.close();
    }
  }
}
