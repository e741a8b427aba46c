/**
 * Issue #11 item 8 and 9 (c, d, e): what one client may hold of the issuer's HTTPS listener.
 * An in-process issuer with short limits (~1-2 s) so the slow-client load finishes quickly;
 * "another source" is 127.0.0.2 (all of 127/8 is loopback on Linux).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildJoinRequest } from '../../src/agent/requests.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef } from '../../src/keystore/index.js';
import { b64u, derToJoseSignature, signJwsWithKey } from '../../src/protocol/jws.js';
import { TYP_RESPONSE } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { MAX_APPLY_YAML_CHARS, runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../src/server/issuer.js';
import { buildHttpsServer, type HttpLimits } from '../../src/transport/https/server.js';
import { silentLogger } from '../../src/util/log.js';
import { readFileSync } from 'node:fs';

const POLICY = 'kind: role\nname: edge\nspec:\n  max_ttl: 1h\n---\nkind: bot\nname: gw\nspec:\n  roles: [edge]\n';
const OTHER_SOURCE = '127.0.0.2';

interface Issuer {
  ctx: IssuerContext;
  app: FastifyInstance;
  port: number;
  rootPem: string;
  adminToken: string;
  request(
    method: string,
    path: string,
    o?: { body?: string; headers?: Record<string, string>; localAddress?: string },
  ): Promise<{ status: number; headers: Record<string, unknown>; json: any }>;
  close(): Promise<void>;
}

async function startIssuer(limits: Partial<HttpLimits>): Promise<Issuer> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-hard-http-'));
  initDataDir(dir, 'example.org');
  const stores = openIssuerStores(dir);
  const ctx = createIssuerContext({ ca: loadCaMaterial(dir), stores, log: silentLogger() });
  await runAdminOp(stores, 'apply', { yaml: POLICY });
  const app = buildHttpsServer({ ctx, limits });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const rootPem = readFileSync(paths(dir).rootCert, 'utf8');
  const request: Issuer['request'] = (method, path, o = {}) =>
    new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port,
          path,
          method,
          ca: rootPem,
          checkServerIdentity: () => undefined,
          agent: false,
          ...(o.localAddress ? { localAddress: o.localAddress } : {}),
          headers: {
            ...(o.body !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(o.body) }
              : {}),
            ...o.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, json });
          });
        },
      );
      req.on('error', reject);
      req.end(o.body);
    });
  return {
    ctx,
    app,
    port,
    rootPem,
    adminToken: readFileSync(paths(dir).adminToken, 'utf8').trim(),
    request,
    close: async () => {
      await app.close();
      await stores.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** When (ms after `t0`) a socket closed, or undefined while it is open. */
function watchClose(s: net.Socket, t0: number): { closedAt?: number } {
  const w: { closedAt?: number } = {};
  s.on('error', () => undefined);
  s.on('close', () => (w.closedAt = Date.now() - t0));
  return w;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function openssl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = execFile('openssl', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    p.stdin?.end('');
  });
}

describe('slow and idle clients, per-source connection cap (issue #11 item 8)', () => {
  let iss: Issuer;
  const LIMITS = {
    idleTimeoutMs: 1000,
    headersTimeoutMs: 1500,
    requestTimeoutMs: 3000,
    keepAliveTimeoutMs: 1000,
    maxConnsPerSource: 40,
  };
  beforeAll(async () => {
    iss = await startIssuer(LIMITS);
  });
  afterAll(() => iss.close());

  it('closes 40 silent, handshake-less and trickling connections within the timeouts, 10 over-cap ones at once, and still serves a normal client', async () => {
    const t0 = Date.now();
    const sockets: net.Socket[] = [];
    const watched: Array<{ kind: string; w: { closedAt?: number } }> = [];
    const connected: Array<Promise<void>> = [];
    const add = (kind: string, s: net.Socket, ready: string): void => {
      sockets.push(s);
      watched.push({ kind, w: watchClose(s, t0) });
      connected.push(new Promise((r) => (s.once(ready, () => r()), s.once('close', () => r()))));
    };
    // 15 raw TCP connections that never start the TLS handshake.
    for (let i = 0; i < 15; i++)
      add('no-handshake', net.connect({ host: '127.0.0.1', port: iss.port, localAddress: OTHER_SOURCE }), 'connect');
    // tls.connect hands these to net.connect, localAddress included (@types/node does not list it).
    const fromOther = { host: '127.0.0.1', port: iss.port, localAddress: OTHER_SOURCE, rejectUnauthorized: false };
    // 15 that complete TLS and then say nothing.
    for (let i = 0; i < 15; i++) add('silent', tls.connect(fromOther), 'secureConnect');
    // 10 that trickle a header byte every 400 ms (slowloris: never idle long enough for the idle timer).
    const trickle = Buffer.from(
      'POST /v1/join HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-slow: ' + 'a'.repeat(100),
    );
    for (let i = 0; i < 10; i++) {
      const s = tls.connect(fromOther);
      add('trickle', s, 'secureConnect');
      let n = 0;
      const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write(trickle.subarray(n, ++n))), 400);
      s.on('close', () => clearInterval(timer));
    }
    await Promise.all(connected);
    await sleep(100); // let the server account for all 40
    // 10 more from the same source: over the cap of 40, closed on accept.
    const tOver = Date.now();
    const over = Array.from({ length: 10 }, () => {
      const s = net.connect({ host: '127.0.0.1', port: iss.port, localAddress: OTHER_SOURCE });
      sockets.push(s);
      return watchClose(s, tOver);
    });
    await sleep(300);
    expect(over.map((w) => w.closedAt !== undefined && w.closedAt < 300)).toEqual(Array(10).fill(true));
    // A normal client (another address) is served meanwhile, while the 40 are still held.
    expect(watched.filter((x) => x.w.closedAt === undefined).length).toBeGreaterThan(0);
    const ok = await iss.request('GET', '/healthz');
    expect(ok.status).toBe(200);
    // Everything closed within the longest timeout (headers 1.5 s, checked every 750 ms) + slack.
    const deadline = t0 + 6000; // generous for a loaded CI box; the loop ends as soon as all are closed
    while (Date.now() < deadline && watched.some((x) => x.w.closedAt === undefined)) await sleep(100);
    for (const s of sockets) s.destroy();
    const open = watched.filter((x) => x.w.closedAt === undefined).map((x) => x.kind);
    expect(open, 'connections still open after 6 s').toEqual([]);
    const worst = (kind: string) => Math.max(...watched.filter((x) => x.kind === kind).map((x) => x.w.closedAt!));
    // Not closed before their timeout either: the cap did not take them.
    expect(Math.min(...watched.map((x) => x.w.closedAt!))).toBeGreaterThanOrEqual(900);
    console.log(
      `slow-client load: no-handshake closed by ${worst('no-handshake')} ms, silent by ${worst('silent')} ms, trickle by ${worst('trickle')} ms; over-cap closed after ${Math.max(...over.map((w) => w.closedAt!))} ms`,
    );
  }, 15_000);

  it('closes a kept-alive connection after the keep-alive timeout', async () => {
    const t0 = Date.now();
    const s = tls.connect({ host: '127.0.0.1', port: iss.port, rejectUnauthorized: false });
    const w = watchClose(s, t0);
    await new Promise((r) => s.once('secureConnect', r));
    let answered = 0;
    s.on('data', () => (answered = answered || Date.now() - t0));
    s.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: keep-alive\r\n\r\n');
    while (w.closedAt === undefined && Date.now() - t0 < 4000) await sleep(50);
    s.destroy();
    expect(answered).toBeGreaterThan(0);
    expect(w.closedAt).toBeDefined();
    // Node 20 closes keepAliveTimeout + 1 s after the response (a buffer against client races).
    expect(w.closedAt! - answered).toBeLessThan(LIMITS.keepAliveTimeoutMs + 1500);
  });
});

describe('join rate limit (issue #11 item 8)', () => {
  let iss: Issuer;
  beforeAll(async () => {
    iss = await startIssuer({ joinRatePerS: 2, joinBurst: 3 });
  });
  afterAll(() => iss.close());

  it('answers a join flood with 429 rate_limited + Retry-After, per source, and lets it through again later', async () => {
    const flood = [];
    for (let i = 0; i < 6; i++) flood.push(await iss.request('POST', '/v1/join', { body: '{}' }));
    expect(flood.slice(0, 3).map((r) => r.status)).toEqual([400, 400, 400]);
    const limited = flood[3]!;
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json).toMatchObject({ code: 'rate_limited', retryable: true });
    expect(limited.json.retryAfterMs).toBeGreaterThan(0);
    expect(limited.json.retryAfterMs).toBeLessThanOrEqual(500);
    expect(flood.slice(4).every((r) => r.status === 429)).toBe(true);
    // Another source has its own bucket; other routes are not limited.
    expect((await iss.request('POST', '/v1/join', { body: '{}', localAddress: OTHER_SOURCE })).status).toBe(400);
    expect((await iss.request('GET', '/v1/bundle')).status).toBe(200);
    await sleep(limited.json.retryAfterMs + 50);
    expect((await iss.request('POST', '/v1/join', { body: '{}' })).status).toBe(400);
  });
});

describe('JWS crit, admin body limit, TLS suites (issue #11 item 9)', () => {
  let iss: Issuer;
  beforeAll(async () => {
    iss = await startIssuer({});
  });
  afterAll(() => iss.close());

  /** A correctly signed token join whose protected header adds `crit`. */
  async function joinWithCrit(): Promise<{ body: string; requestId: string }> {
    const token = ((await runAdminOp(iss.ctx.stores, 'token.create', { bot: 'gw' })) as { token: string }).token;
    const agent = new TokenJoinAgent(token);
    const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
    const signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
    const header = {
      ...JSON.parse(b64u.decode(built.envelope.protected).toString('utf8')),
      crit: ['sigil-ext'],
      'sigil-ext': true,
    };
    const protectedB64 = b64u.encode(JSON.stringify(header));
    const sig = derToJoseSignature(
      await signer.sign(Buffer.from(`${protectedB64}.${built.envelope.payload}`, 'ascii')),
      signer.algorithm,
    );
    return {
      body: JSON.stringify({ protected: protectedB64, payload: built.envelope.payload, signature: b64u.encode(sig) }),
      requestId: built.entry.requestId,
    };
  }

  it('the issuer refuses a request whose JWS header has crit (RFC 7515 §4.1.11)', async () => {
    const { body } = await joinWithCrit();
    const r = await iss.request('POST', '/v1/join', { body });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: 'bad_request', message: expect.stringMatching(/crit/) });
  });

  it('the agent refuses an issuer response whose JWS header has crit', async () => {
    const token = ((await runAdminOp(iss.ctx.stores, 'token.create', { bot: 'gw' })) as { token: string }).token;
    const agent = new TokenJoinAgent(token);
    const built = await buildJoinRequest({ method: 'token', evidence: (c) => agent.evidence(c), now: Date.now() });
    const r = await iss.request('POST', '/v1/join', { body: JSON.stringify(built.envelope) });
    expect(r.status).toBe(200);
    expect(verifyResponse(r.json, 'join', built.entry.requestId, iss.rootPem).op).toBe('join');
    // The same payload, signed by the real issuer key, with a crit header.
    const plain = signJwsWithKey(
      iss.ctx.server.key,
      'ES256',
      TYP_RESPONSE,
      b64u.decode(r.json.payload).toString('utf8'),
      iss.ctx.server.chainDer,
    );
    const header = {
      ...JSON.parse(b64u.decode(plain.protected).toString('utf8')),
      crit: ['sigil-ext'],
      'sigil-ext': true,
    };
    const protectedB64 = b64u.encode(JSON.stringify(header));
    const { sign } = await import('node:crypto');
    const signature = b64u.encode(
      sign('sha256', Buffer.from(`${protectedB64}.${plain.payload}`, 'ascii'), {
        key: iss.ctx.server.key,
        dsaEncoding: 'ieee-p1363',
      }),
    );
    expect(() =>
      verifyResponse(
        { protected: protectedB64, payload: plain.payload, signature },
        'join',
        built.entry.requestId,
        iss.rootPem,
      ),
    ).toThrow(expect.objectContaining({ code: 'response_invalid', message: expect.stringMatching(/crit/) }));
  });

  it('remote apply takes a policy file up to the schema limit and refuses one char more with the same error as local apply', async () => {
    const padded = (chars: number): string => POLICY + '#'.padEnd(chars - POLICY.length - 1, 'x') + '\n';
    const auth = { authorization: `Bearer ${iss.adminToken}` };
    const atLimit = padded(MAX_APPLY_YAML_CHARS);
    expect(atLimit.length).toBe(MAX_APPLY_YAML_CHARS);
    const ok = await iss.request('POST', '/v1/admin/apply', { body: JSON.stringify({ yaml: atLimit }), headers: auth });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    const over = await iss.request('POST', '/v1/admin/apply', {
      body: JSON.stringify({ yaml: padded(MAX_APPLY_YAML_CHARS + 1) }),
      headers: auth,
    });
    expect(over.status).toBe(400);
    expect(over.json.code).toBe('bad_request');
    await expect(runAdminOp(iss.ctx.stores, 'apply', { yaml: padded(MAX_APPLY_YAML_CHARS + 1) })).rejects.toThrow(
      expect.objectContaining({ code: 'bad_request' }),
    );
    expect(await runAdminOp(iss.ctx.stores, 'apply', { yaml: atLimit })).toBeDefined();
    // Without the credential a large body is refused before it is read.
    const anon = await iss.request('POST', '/v1/admin/apply', { body: JSON.stringify({ yaml: atLimit }) });
    expect(anon.status).toBe(401);
    // Far past what any allowed policy encodes to: 413.
    const huge = await iss.request('POST', '/v1/admin/apply', {
      body: JSON.stringify({ yaml: 'x'.repeat(4 * MAX_APPLY_YAML_CHARS) }),
      headers: auth,
    });
    expect(huge.status).toBe(413);
    expect(huge.json.code).toBe('body_too_large');
  });

  it('TLS 1.2 offers AEAD suites only: a CBC handshake fails, GCM and ChaCha20 work, TLS 1.3 works', async () => {
    const connect = ['s_client', '-connect', `127.0.0.1:${iss.port}`, '-servername', 'localhost'];
    for (const cbc of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256']) {
      const r = await openssl([...connect, '-tls1_2', '-cipher', cbc]);
      expect(r.code, `${cbc} handshake should fail`).not.toBe(0);
      expect(r.out).toMatch(/handshake failure|no cipher|alert/i);
    }
    for (const aead of [
      'ECDHE-ECDSA-AES128-GCM-SHA256',
      'ECDHE-ECDSA-AES256-GCM-SHA384',
      'ECDHE-ECDSA-CHACHA20-POLY1305',
    ]) {
      const r = await openssl([...connect, '-tls1_2', '-cipher', aead]);
      expect(r.out, aead).toMatch(new RegExp(`Cipher is ${aead}`));
    }
    const t13 = await openssl([...connect, '-tls1_3']);
    expect(t13.out).toMatch(/TLSv1\.3/);
  });
});
