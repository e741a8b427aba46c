/**
 * POST /v1/renew served beside fastify, not through it (issue #14). A renewal is the request an
 * issuer serves most, and fastify's per-request pipeline (routing, request and reply objects,
 * hooks, the content-type parser, reply serialisation) cost 16–35 µs of the ~0.55 ms a renewal takes
 * over HTTPS. This path takes a renewal only when its headers alone show fastify would do nothing
 * but parse a JSON body and call the handler; everything else — another method or path, a query
 * string, another content type, a chunked or oversized or empty body, a server that is closing —
 * goes to fastify's own handler untouched, before a byte of the body is read, and gets exactly the
 * answers it got before (server.ts).
 *
 * What the path keeps, as fastify did for this route (docs/https-renew-route.md;
 * test/integration/https-fast-route.test.ts compares the two): the body limit (Content-Length
 * checked first; Node's parser never delivers more than it), JSON only, the JSON parser's
 * refusal of `__proto__` keys and of `constructor.prototype` (prototype poisoning: fastify's
 * default `onProtoPoisoning` / `onConstructorPoisoning: 'error'`), a malformed body refused
 * `malformed_json` and audited like every refusal of an audited operation, SigilErrors answered
 * with their status and {code, message, retryable} body (no stack, no internal message), the
 * request counted in metrics. Every check of the renewal itself is the handler's
 * (server/ops/renew.ts), unchanged.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { SigilError, toSigilError } from '../../errors.js';
import type { IssuerContext } from '../../server/issuer.js';
import { auditRefusal } from '../../server/ops/refusal.js';
import type { Operation } from '../../server/ops/table.js';

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** The media types fastify's JSON parser takes that this path takes too (anything else: fastify). */
const JSON_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/json; charset=utf-8']);

export interface FastRouteOptions {
  ctx: IssuerContext;
  /** The operation served (its `handle` and `audited`); its path is `/v1/<name>`. */
  op: Operation;
  /** The same limit fastify applies to the route (server.ts MAX_BODY_BYTES). */
  bodyLimit: number;
  /** True once fastify began closing: requests then go to fastify, which answers 503. */
  closing(): boolean;
}

/** The answer to a refusal, exactly as server.ts sendError writes it through fastify. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function errorAnswer(e: SigilError): ErrorAnswer {
  const body = JSON.stringify(e.toWire());
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
  };
  if (e.retryAfterMs !== undefined) headers['retry-after'] = String(Math.ceil(e.retryAfterMs / 1000));
  return { status: e.status, headers, body };
}

/**
 * Put the fast path in front of fastify's request listener on `server` (fastify's `app.server`,
 * whose one 'request' listener is fastify's handler). Returns false, changing nothing, when the
 * server does not have exactly that one listener.
 */
export function installFastRoute(server: Server, opts: FastRouteOptions): boolean {
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) return false;
  const fastify = listeners[0]!;
  const path = `/v1/${opts.op.name}`;
  server.removeListener('request', fastify);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const length = req.method === 'POST' && req.url === path && !opts.closing() ? bodyLength(req, opts.bodyLimit) : 0;
    if (length === 0) {
      fastify(req, res);
      return;
    }
    serve(req, res, length, opts);
  });
  return true;
}

/**
 * The body's length when this path can serve the request from its headers alone, else 0: a JSON
 * content type fastify's parser takes, no Transfer-Encoding (Node refuses one with a
 * Content-Length), and a Content-Length of 1 … limit (0 and over-limit bodies get fastify's
 * refusals: malformed_json and body_too_large).
 */
function bodyLength(req: IncomingMessage, limit: number): number {
  const h = req.headers;
  const type = h['content-type'];
  if (type === undefined || !JSON_TYPES.has(type.toLowerCase())) return 0;
  if (h['transfer-encoding'] !== undefined) return 0;
  const cl = h['content-length'];
  if (cl === undefined || !/^[0-9]{1,9}$/.test(cl)) return 0;
  const n = Number(cl);
  return n >= 1 && n <= limit ? n : 0;
}

function serve(req: IncomingMessage, res: ServerResponse, length: number, opts: FastRouteOptions): void {
  const chunks: Buffer[] = [];
  let received = 0;
  req.on('data', (c: Buffer) => {
    chunks.push(c);
    received += c.length;
  });
  // A client that goes away mid-body: nothing to answer (the socket is gone).
  req.on('error', () => undefined);
  req.on('end', () => {
    // Node's HTTP parser ends the body at exactly Content-Length bytes (checked all the same).
    const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
    void answer(req, res, received === length ? raw : undefined, opts);
  });
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  raw: Buffer | undefined,
  { ctx, op }: FastRouteOptions,
): Promise<void> {
  const remote = req.socket.remoteAddress ?? '';
  let status = 200;
  try {
    const body = raw === undefined ? undefined : parseJsonBody(raw);
    if (body === undefined) {
      // Refused before reaching the operation: audited and counted like fastify's parse errors (server.ts).
      const e = new SigilError('malformed_json');
      if (op.audited) await auditRefusal(ctx, op.name, e, { remote });
      throw e;
    }
    const jws = await op.handle(ctx, { body, remote, confidential: true, carrier: 'https' });
    const text = JSON.stringify(jws);
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  } catch (err) {
    if (!(err instanceof SigilError)) ctx.log.error({ err }, 'unhandled error in HTTPS handler');
    const a = errorAnswer(err instanceof SigilError ? err : toSigilError(err));
    status = a.status;
    if (!res.headersSent) {
      res.writeHead(a.status, a.headers);
      res.end(a.body);
    }
  }
  ctx.metrics.requests.inc({ transport: 'https', op: op.name, outcome: status === 200 ? 'ok' : `http_${status}` });
}

/**
 * JSON.parse of the body, refusing what fastify's JSON parser refuses (secure-json-parse with
 * protoAction and constructorAction 'error'): an own `__proto__` key anywhere, or a
 * `constructor` key whose value is an object with a `prototype` key. Undefined when refused.
 */
export function parseJsonBody(raw: Buffer): unknown {
  let text = raw.toString('utf8');
  // A leading byte order mark is skipped, as secure-json-parse does.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null) continue;
    if (Object.hasOwn(node, '__proto__')) return undefined;
    const ctor = (node as { constructor?: unknown }).constructor;
    if (
      Object.hasOwn(node, 'constructor') &&
      typeof ctor === 'object' &&
      ctor !== null &&
      Object.hasOwn(ctor, 'prototype')
    )
      return undefined;
    for (const k in node) stack.push((node as Record<string, unknown>)[k]);
  }
  return value;
}
