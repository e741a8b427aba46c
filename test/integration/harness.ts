/**
 * In-process issuer for integration tests: a real data directory, SQLite stores, the real
 * fastify HTTPS server on 127.0.0.1 (port 0), and raw node:https requests against it. The
 * issuer's clock is adjustable (`clock.offsetMs`) so expiry and skew can be tested without
 * sleeping.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createHmac, sign as cryptoSign, createPublicKey, type KeyObject } from 'node:crypto';
import { expect } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildJoinRequest, buildRenewRequest } from '../../src/agent/requests.js';
import { SigilError } from '../../src/errors.js';
import { TokenJoinAgent } from '../../src/join/token/agent.js';
import { loadSigner, parseKeyRef, SoftwareSigner } from '../../src/keystore/index.js';
import type { Signer } from '../../src/keystore/signer.js';
import { buildCsr } from '../../src/pki/csr.js';
import { toPem } from '../../src/pki/pem.js';
import { b64u, signJws, type Jws } from '../../src/protocol/jws.js';
import { TYP_REQUEST, type IdentityResult } from '../../src/protocol/messages.js';
import { verifyResponse } from '../../src/protocol/verify-response.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { initDataDir, loadCaMaterial, openIssuerStores, paths } from '../../src/server/data-dir.js';
import { createIssuerContext, type IssuerContext } from '../../src/server/issuer.js';
import type { AuditRecord } from '../../src/server/store/types.js';
import { buildHttpsServer } from '../../src/transport/https/server.js';
import { silentLogger } from '../../src/util/log.js';
import { newRequestId } from '../../src/util/secret.js';

export const POLICY = `
kind: role
name: edge
spec:
  max_ttl: 24h
---
kind: bot
name: gw
spec:
  roles: [edge]
`;

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed body, or undefined if it is not JSON. */
  json: any;
}

/** The agent's side of one identity: the current key and chain. */
export interface Identity {
  signer: Signer;
  chainPem: string[];
  result: IdentityResult;
}

export interface Harness {
  dir: string;
  ctx: IssuerContext;
  app: FastifyInstance;
  port: number;
  rootPem: string;
  adminToken: string;
  clock: { offsetMs: number };
  request(
    method: string,
    path: string,
    opts?: { body?: string | Buffer; headers?: Record<string, string | number> },
  ): Promise<HttpResult>;
  /** POST a JSON value (a JWS envelope or anything else) to /v1/<op>. */
  post(op: string, body: unknown): Promise<HttpResult>;
  token(opts?: { bot?: string; ttl?: string }): Promise<string>;
  /** Join with a fresh token; throws if the issuer refuses. */
  join(opts?: { token?: string; ttlS?: number }): Promise<Identity & { envelope: Jws; response: HttpResult }>;
  /** Build (not send) a renew envelope signed by `id`'s current key. */
  renewEnvelope(id: Identity, opts?: { now?: number }): Promise<{ envelope: Jws; newSigner: Signer }>;
  /** Parse a 200 identity response into the next Identity. */
  identityFrom(res: HttpResult, op: 'join' | 'renew', requestId: string, signer: Signer): Identity;
  counts(): Promise<{ instances: number; certificates: number; audit: number; usedTokens: number }>;
  auditAfter(seq: number): Promise<AuditRecord[]>;
  lastAuditSeq(): Promise<number>;
  /** Stop; `keepDir` leaves the data directory for a restart (startIssuer({ dir })). */
  close(opts?: { keepDir?: boolean }): Promise<void>;
}

/** `dir`: start on an existing data directory (a restart) instead of a new one; `port`: listen there (0: any free one). */
export async function startIssuer(opts: { dir?: string; port?: number } = {}): Promise<Harness> {
  const dir = opts.dir ?? mkdtempSync(joinPath(tmpdir(), 'sigil-int-'));
  if (opts.dir === undefined) initDataDir(dir, 'example.org');
  const ca = loadCaMaterial(dir);
  const stores = openIssuerStores(dir);
  const clock = { offsetMs: 0 };
  const ctx = createIssuerContext({ ca, stores, log: silentLogger(), now: () => Date.now() + clock.offsetMs });
  const app = buildHttpsServer({ ctx });
  await app.listen({ host: '127.0.0.1', port: opts.port ?? 0 });
  const port = (app.server.address() as AddressInfo).port;
  // As `sigil server start` does without --public-url: the listen URL is the OIDC issuer.
  ctx.publicUrl = `https://127.0.0.1:${port}`;
  const rootPem = readFileSync(paths(dir).rootCert, 'utf8');
  const adminToken = readFileSync(paths(dir).adminToken, 'utf8').trim();
  await runAdminOp(stores, 'apply', { yaml: POLICY });

  const request: Harness['request'] = (method, path, opts = {}) =>
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
          headers: {
            ...(opts.body !== undefined ? { 'content-length': Buffer.byteLength(opts.body) } : {}),
            ...opts.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(opts.body);
    });

  const post: Harness['post'] = (op, body) =>
    request('POST', `/v1/${op}`, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

  const token: Harness['token'] = async (opts = {}) =>
    (
      (await runAdminOp(
        stores,
        'token.create',
        { bot: opts.bot ?? 'gw', ...(opts.ttl ? { ttl: opts.ttl } : {}) },
        ctx.now(),
      )) as { token: string }
    ).token;

  const identityFrom: Harness['identityFrom'] = (res, op, requestId, signer) => {
    if (res.status !== 200) throw new Error(`${op} refused: HTTP ${res.status} ${res.text}`);
    const payload = verifyResponse(res.json, op, requestId, rootPem);
    return { signer, chainPem: payload.result.chain, result: payload.result };
  };

  const join: Harness['join'] = async (opts = {}) => {
    const agent = new TokenJoinAgent(opts.token ?? (await token()));
    const built = await buildJoinRequest({
      method: 'token',
      evidence: (c) => agent.evidence(c),
      now: ctx.now(),
      ...(opts.ttlS ? { ttlS: opts.ttlS } : {}),
    });
    const signer = loadSigner(parseKeyRef(built.entry.pendingKeyRef!));
    const response = await post('join', built.envelope);
    return { ...identityFrom(response, 'join', built.entry.requestId, signer), envelope: built.envelope, response };
  };

  const renewEnvelope: Harness['renewEnvelope'] = async (id, opts = {}) => {
    const built = await buildRenewRequest({ current: id.signer, chainPem: id.chainPem, now: opts.now ?? ctx.now() });
    return { envelope: built.envelope, newSigner: loadSigner(parseKeyRef(built.entry.pendingKeyRef!)) };
  };

  const counts: Harness['counts'] = async () => {
    const instances = await stores.instances.list();
    let certificates = 0;
    for (const i of instances) certificates += (await stores.certificates.listByInstance(i.id)).length;
    return {
      instances: instances.length,
      certificates,
      audit: (await stores.audit.list()).length,
      usedTokens: (await stores.tokens.list()).filter((t) => t.usedAt !== null).length,
    };
  };

  const lastAuditSeq = async (): Promise<number> => (await stores.audit.list()).at(-1)?.seq ?? 0;
  const auditAfter = async (seq: number): Promise<AuditRecord[]> =>
    (await stores.audit.list()).filter((r) => r.seq > seq);

  return {
    dir,
    ctx,
    app,
    port,
    rootPem,
    adminToken,
    clock,
    request,
    post,
    token,
    join,
    renewEnvelope,
    identityFrom,
    counts,
    auditAfter,
    lastAuditSeq,
    async close(o: { keepDir?: boolean } = {}) {
      await app.close();
      await stores.close();
      if (!o.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Token evidence as the agent builds it: bound to `requestId` and the new key's SPKI. */
export function tokenEvidence(token: string, requestId: string, spkiDer: Buffer): Promise<Record<string, unknown>> {
  return new TokenJoinAgent(token).evidence({ requestId, spkiDer });
}

/**
 * A join payload as buildJoinRequest makes it, with overrides, for a fresh key (or `signer`).
 * With `token`, the evidence is that token's proof for this payload's request id and key.
 */
export async function joinPayload(
  over: Record<string, unknown> = {},
  opts: { token?: string; signer?: Signer } = {},
): Promise<{ payload: Record<string, unknown>; signer: Signer }> {
  const signer = opts.signer ?? SoftwareSigner.generate();
  const requestId = typeof over.request_id === 'string' ? over.request_id : newRequestId();
  const evidence = opts.token !== undefined ? await tokenEvidence(opts.token, requestId, signer.publicKeySpki()) : {};
  const payload: Record<string, unknown> = {
    v: 1,
    op: 'join',
    request_id: requestId,
    timestamp: Date.now(),
    method: 'token',
    csr: toPem('CERTIFICATE REQUEST', await buildCsr(signer)),
    evidence,
    key_storage: 'software',
    ...over,
  };
  return { payload, signer };
}

export function sign(signer: Signer, payload: unknown, x5c?: Buffer[], typ = TYP_REQUEST): Promise<Jws> {
  return signJws(signer, typ, payload, x5c);
}

/** The refusal body every endpoint must answer with: {code, message, retryable}, nothing leaked. */
export function expectRefusal(res: HttpResult, status: number, code: string): void {
  const where = `HTTP ${res.status} ${res.text}`;
  if (res.status !== status) throw new Error(`expected HTTP ${status} ${code}, got ${where}`);
  const b = res.json as Record<string, unknown> | undefined;
  if (!b || b.code !== code) throw new Error(`expected code ${code}, got ${where}`);
  if (typeof b.message !== 'string' || b.message.length === 0) throw new Error(`refusal without a message: ${where}`);
  if (typeof b.retryable !== 'boolean') throw new Error(`refusal without retryable: ${where}`);
  const extra = Object.keys(b).filter((k) => !['code', 'message', 'retryable', 'retryAfterMs'].includes(k));
  if (extra.length) throw new Error(`refusal has unexpected members ${extra.join(', ')}: ${where}`);
  if (!String(res.headers['content-type'] ?? '').startsWith('application/json'))
    throw new Error(`refusal content-type is ${String(res.headers['content-type'])}`);
  if (/Error:|\n\s+at |\.ts:\d+|node_modules/.test(res.text))
    throw new Error(`refusal leaks an error name or stack: ${where}`);
}

/**
 * POST `body` and expect a refusal that changes nothing: the documented status and body, no
 * new instance, certificate or used token, and exactly one new audit row (action `op`,
 * outcome refused, the same code).
 */
export async function expectRefused(
  h: Harness,
  op: 'join' | 'renew',
  body: unknown,
  status: number,
  code: string,
): Promise<HttpResult> {
  const before = await h.counts();
  const seq = await h.lastAuditSeq();
  const res = await h.post(op, body);
  expectRefusal(res, status, code);
  expect(await h.counts()).toEqual({ ...before, audit: before.audit + 1 });
  expect((await h.auditAfter(seq)).map((r) => ({ action: r.action, outcome: r.outcome, code: r.code }))).toEqual([
    { action: op, outcome: 'refused', code },
  ]);
  return res;
}

/** A JWS with an arbitrary header and payload and a caller-chosen signature (for alg-confusion tests). */
export function rawJws(header: unknown, payload: unknown, signature = ''): Jws {
  return {
    protected: b64u.encode(JSON.stringify(header)),
    payload: typeof payload === 'string' ? b64u.encode(payload) : b64u.encode(JSON.stringify(payload)),
    signature,
  };
}

/** HS256 over `jws` with `secret` as the HMAC key: the classic "public key as HMAC secret" confusion. */
export function hmacJws(header: unknown, payload: unknown, secret: Buffer | string): Jws {
  const j = rawJws(header, payload);
  return { ...j, signature: createHmac('sha256', secret).update(`${j.protected}.${j.payload}`).digest('base64url') };
}

/** A Signer over any P-256 KeyObject (e.g. the issuer's own serving key). */
export function keySigner(key: KeyObject): Signer {
  return {
    storage: 'software',
    exportable: true,
    algorithm: 'ES256',
    publicKeySpki: () => createPublicKey(key).export({ type: 'spki', format: 'der' }),
    sign: (data: Buffer) => Promise.resolve(cryptoSign('sha256', data, { key, dsaEncoding: 'der' })),
  };
}

/**
 * Expect a join (`run`, e.g. an exchange with a tampered answer) to be refused with `code`, with
 * exactly one new audit row saying so and nothing else written.
 */
export async function expectJoinRefusedBy(
  h: Harness,
  method: string,
  run: () => Promise<unknown>,
  code: string,
): Promise<SigilError> {
  const seq = await h.lastAuditSeq();
  const before = await h.counts();
  const err = await run().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `the join should be refused with ${code}`).toBeInstanceOf(SigilError);
  expect((err as SigilError).code, (err as Error).message).toBe(code);
  expect(
    (await h.auditAfter(seq)).map((r) => ({ action: r.action, outcome: r.outcome, code: r.code, method: r.method })),
  ).toEqual([{ action: 'join', outcome: 'refused', code, method }]);
  expect(await h.counts()).toEqual({ ...before, audit: before.audit + 1 });
  return err as SigilError;
}
