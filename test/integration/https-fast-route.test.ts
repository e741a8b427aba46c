/**
 * POST /v1/renew beside fastify (src/transport/https/fast-route.ts, issue #14): two servers on one
 * issuer context, one with the fast path (the default) and one serving renew through fastify, get
 * the same raw requests and must answer alike — status, content type, body — for a renewal, its
 * replay and every input fastify refuses before the handler. Which path served a request is seen
 * through a fastify onRequest hook (the fast path never runs it).
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpsServer, MAX_BODY_BYTES } from '../../src/transport/https/server.js';
import { parseJsonBody } from '../../src/transport/https/fast-route.js';
import { startIssuer, type Harness, type Identity } from './harness.js';

interface Raw {
  status: number;
  type: string | undefined;
  body: string;
}

let h: Harness;
let fast: { app: FastifyInstance; port: number; viaFastify: number };
let slow: { app: FastifyInstance; port: number; viaFastify: number };
let id: Identity;

async function serve(fastRenew: boolean): Promise<{ app: FastifyInstance; port: number; viaFastify: number }> {
  const app = buildHttpsServer({ ctx: h.ctx, tls: false, fastRenew });
  const s = { app, port: 0, viaFastify: 0 };
  app.addHook('onRequest', async () => {
    s.viaFastify++;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  s.port = (app.server.address() as AddressInfo).port;
  return s;
}

function send(
  port: number,
  body: string | Buffer | undefined,
  headers: Record<string, string> = { 'content-type': 'application/json' },
  path = '/v1/renew',
  chunked = false,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent: false,
        headers: {
          ...(body !== undefined && !chunked ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            type: res.headers['content-type'],
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    if (chunked && body !== undefined) {
      req.write(body);
      req.end();
    } else req.end(body);
  });
}

/** The same request to both servers: the answers agree; returns the fast server's and whether fastify served it there. */
async function both(...args: Parameters<typeof send> extends [number, ...infer R] ? R : never) {
  const before = fast.viaFastify;
  const a = await send(fast.port, ...args);
  const viaFastify = fast.viaFastify > before;
  const b = await send(slow.port, ...args);
  expect({ status: a.status, type: a.type }).toEqual({ status: b.status, type: b.type });
  if (a.status !== 200) expect(JSON.parse(a.body)).toEqual(JSON.parse(b.body));
  return { ...a, viaFastify };
}

beforeAll(async () => {
  h = await startIssuer();
  fast = await serve(true);
  slow = await serve(false);
  id = await h.join();
}, 30_000);
afterAll(async () => {
  await fast?.app.close();
  await slow?.app.close();
  await h?.close();
});

describe('POST /v1/renew without fastify', () => {
  it('renews, answers a replay with the same bytes, and records both through the handler', async () => {
    const { envelope } = await h.renewEnvelope(id);
    const body = JSON.stringify(envelope);
    const seq = await h.lastAuditSeq();
    const first = await send(fast.port, body);
    expect(first.status).toBe(200);
    expect(first.type).toBe('application/json; charset=utf-8');
    const requestId = JSON.parse(Buffer.from(envelope.payload, 'base64url').toString('utf8')).request_id as string;
    const next = h.identityFrom(
      { status: 200, headers: {}, text: first.body, json: JSON.parse(first.body) },
      'renew',
      requestId,
      id.signer,
    );
    expect(next.result.generation).toBe(id.result.generation + 1);
    // The same request to the fastify-served route: the stored answer, byte for byte.
    const replay = await send(slow.port, body);
    expect(replay.status).toBe(200);
    expect(JSON.parse(replay.body).payload).toBe(JSON.parse(first.body).payload);
    const rows = await h.auditAfter(seq);
    expect(rows.filter((r) => r.action === 'renew' && r.outcome === 'ok')).toHaveLength(1);
  });

  it('takes only plain JSON bodies; everything else goes to fastify and is answered as before', async () => {
    const { envelope } = await h.renewEnvelope(id);
    const ok = JSON.stringify({ ...envelope, signature: 'AAAA' });
    // Served here: refused by the handler, exactly as through fastify.
    expect((await both(ok)).viaFastify).toBe(false);
    expect((await both(ok, { 'content-type': 'application/json; charset=utf-8' })).viaFastify).toBe(false);
    expect((await both(ok, { 'content-type': 'Application/JSON' })).viaFastify).toBe(false);
    // Handed to fastify before the body is read.
    for (const [body, headers, path, chunked, status] of [
      [ok, { 'content-type': 'text/plain' }, '/v1/renew', false, 415],
      [ok, { 'content-type': 'application/xml' }, '/v1/renew', false, 415],
      [ok, { 'content-type': 'application/json; charset=latin1' }, '/v1/renew', false, undefined],
      [ok, { 'content-type': 'application/json' }, '/v1/renew?x=1', false, undefined],
      [ok, { 'content-type': 'application/json' }, '/v1/renew/', false, 404],
      [ok, { 'content-type': 'application/json' }, '/v1/renew', true, undefined],
      ['', { 'content-type': 'application/json' }, '/v1/renew', false, 400],
      [
        JSON.stringify({ protected: 'a'.repeat(MAX_BODY_BYTES), payload: '', signature: '' }),
        { 'content-type': 'application/json' },
        '/v1/renew',
        false,
        413,
      ],
    ] as const) {
      const r = await both(body, headers, path, chunked);
      expect(r.viaFastify, `${path} ${JSON.stringify(headers)} chunked=${chunked}`).toBe(true);
      if (status !== undefined) expect(r.status).toBe(status);
    }
  });

  it('refuses malformed JSON and prototype poisoning as fastify does, and audits the refusal', async () => {
    const seq = await h.lastAuditSeq();
    for (const body of [
      '{"protected": ',
      'not json',
      '{"__proto__": {"admin": true}, "protected": "a", "payload": "b", "signature": "c"}',
      '{"protected": {"constructor": {"prototype": {"admin": true}}}, "payload": "b", "signature": "c"}',
      '[{"x": {"\\u005f_proto__": 1}}]',
    ]) {
      const r = await both(body);
      expect(r.viaFastify).toBe(false);
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).code).toBe('malformed_json');
    }
    // Each refusal audited once per server (5 bodies × 2 servers), naming the operation.
    const rows = (await h.auditAfter(seq)).filter((r) => r.action === 'renew' && r.code === 'malformed_json');
    expect(rows).toHaveLength(10);
  });

  it('accepts what the JSON parser accepts: a byte order mark, a constructor that is not a prototype holder', async () => {
    expect(parseJsonBody(Buffer.from('\ufeff{"a":1}'))).toEqual({ a: 1 });
    expect(parseJsonBody(Buffer.from('{"constructor": "x", "b": {"constructor": {"y": 1}}}'))).toEqual({
      constructor: 'x',
      b: { constructor: { y: 1 } },
    });
    expect(parseJsonBody(Buffer.from('{"__proto__": null}'))).toBeUndefined();
    const r = await both('\ufeff{"protected": "a", "payload": "b", "signature": "c"}');
    expect(r.viaFastify).toBe(false);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).code).not.toBe('malformed_json');
  });

  it('counts requests in metrics like the fastify route', async () => {
    const scrape = async (): Promise<string> => h.ctx.metrics.registry.scrape();
    const line = (text: string): number => {
      const m =
        /sigil_requests_total\{[^}]*op="renew"[^}]*outcome="http_400"[^}]*transport="https"[^}]*\} (\d+)/.exec(text) ??
        /sigil_requests_total\{[^}]*transport="https"[^}]*op="renew"[^}]*outcome="http_400"[^}]*\} (\d+)/.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = line(await scrape());
    await send(fast.port, 'not json');
    await send(slow.port, 'not json');
    expect(line(await scrape())).toBe(before + 2);
  });

  it('a body trickled on the fast path is cut off by the request timeout (slowloris), as through fastify', async () => {
    const app = buildHttpsServer({
      ctx: h.ctx,
      tls: false,
      limits: { headersTimeoutMs: 400, requestTimeoutMs: 800, idleTimeoutMs: 5000 },
    });
    let viaFastify = 0;
    app.addHook('onRequest', async () => {
      viaFastify++;
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (app.server.address() as AddressInfo).port;
      const s = net.connect({ host: '127.0.0.1', port });
      const t0 = Date.now();
      const closed = new Promise<{ at: number; text: string }>((resolve) => {
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString('latin1')));
        s.on('error', () => undefined);
        s.on('close', () => resolve({ at: Date.now() - t0, text }));
      });
      s.write('POST /v1/renew HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{');
      const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write(' ')), 150);
      const { at, text } = await closed;
      clearInterval(timer);
      expect(at).toBeLessThan(4000);
      expect(text).toMatch(/^HTTP\/1\.1 408/);
      expect(viaFastify).toBe(0);
    } finally {
      await app.close();
    }
  });
});
