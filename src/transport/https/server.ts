/**
 * The issuer's HTTPS adapter (fastify). It only moves bytes: parse JSON within limits, call
 * the operation, map SigilError codes to status + {code, message, retryable}. Internal errors
 * never leak a message or a stack trace to the client. The protocol routes are one per entry of
 * the operation table (server/ops/table.ts): `/v1/<op>`, POST with a signed envelope or GET.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { SigilError, toSigilError, type ErrorCode } from '../../errors.js';
import { runAdminCall } from '../../server/admin/audited.js';
import { CRL_FETCH_LIMIT, type CrlPublisher } from '../../server/crl/publisher.js';
import { ADMIN_MAX_BODY_BYTES } from '../../server/admin/ops.js';
import type { IssuerContext, ServerIdentity } from '../../server/issuer.js';
import { jwks, KEYS_MAX_AGE_S, openIdConfiguration, spiffeBundle } from '../../server/credentials/discovery.js';
import { auditRefusal } from '../../server/ops/refusal.js';
import { OPERATION_LIST, OPERATIONS, operationNamed } from '../../server/ops/table.js';
import { RateLimiter } from '../../server/rate-limit.js';
import { constantTimeEqual, sha256Hex } from '../../util/secret.js';
import { DEFAULT_HTTP_LIMITS, type HttpLimits, trackConnectionsPerSource } from './limits.js';
import { installFastRoute } from './fast-route.js';

export { DEFAULT_HTTP_LIMITS, type HttpLimits } from './limits.js';

/** Requests are small signed JSON documents; 64 KiB leaves room for long chains. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher only — no CBC (Lucky13-class
 * padding oracles, SHA-1 MACs), no static RSA key exchange (RFC 7525 §4.2, RFC 9325 §4.2).
 * The TLS 1.3 suites (RFC 8446 §9.1) are all AEAD and listed so that naming ciphers does not
 * drop them. The serving key is ECDSA P-256 (server/issuer.ts); RSA variants stay for an
 * operator-provided RSA certificate.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
const TLS_BASE = { minVersion: 'TLSv1.2' as const, ciphers: TLS_CIPHERS, honorCipherOrder: true };

const FASTIFY_CODE_MAP: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
};

const routeOf = (op: string): string => `/v1/${op}`;

/** How long GET /readyz waits for the store before answering 503. */
const READY_TIMEOUT_MS = 2000;

/** The operation a matched route serves (`/v1/<op>`), if any. */
function opOfRoute(url: string | undefined): ReturnType<typeof operationNamed> {
  const m = /^\/v1\/([a-z_]+)$/.exec(url ?? '');
  return operationNamed(m?.[1]);
}

function sendError(reply: FastifyReply, e: SigilError): FastifyReply {
  if (e.retryAfterMs !== undefined) reply.header('retry-after', Math.ceil(e.retryAfterMs / 1000));
  return reply.code(e.status).type('application/json').send(e.toWire());
}

export interface HttpsServerOptions {
  ctx: IssuerContext;
  /** Set to false in tests that want plain HTTP; production always uses TLS. */
  tls?: boolean;
  /** Connection timeouts, per-source connection cap and join rate (./limits.ts); defaults apply per field. */
  limits?: Partial<HttpLimits>;
  /** The CRL for relying parties (server/crl/publisher.ts), served at GET /v1/crl; none: no route. */
  crl?: Pick<CrlPublisher, 'current'>;
  /**
   * POST /v1/renew beside fastify's pipeline (./fast-route.ts; issue #14). Default true; false
   * serves it through fastify like every other route (tests compare the two).
   */
  fastRenew?: boolean;
}

/**
 * Serve `id` on new TLS handshakes from now on (the IssuerService rotates the serving identity,
 * server/service.ts); connections already open keep theirs until they close.
 */
export function presentServerIdentity(app: FastifyInstance, id: ServerIdentity): void {
  (app.server as unknown as import('node:https').Server).setSecureContext({
    key: id.keyPem,
    cert: id.certPem,
    ...TLS_BASE,
  });
}

export function buildHttpsServer({
  ctx,
  tls = true,
  limits: given = {},
  crl,
  fastRenew = true,
}: HttpsServerOptions): FastifyInstance {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...given };
  // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval (30 s by
  // default), which would let a trickling client overstay a short timeout by that much.
  const nodeHttp = {
    headersTimeout: limits.headersTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2))),
  };
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY_BYTES,
    // A TLS handshake that never completes gets the header timeout too (Node's default is 120 s).
    ...(tls
      ? {
          https: {
            key: ctx.server.keyPem,
            cert: ctx.server.certPem,
            ...TLS_BASE,
            ...nodeHttp,
            handshakeTimeout: limits.headersTimeoutMs,
          },
        }
      : { http: nodeHttp }),
    // Idle before the first request (and the socket idle timer), between requests, whole request.
    connectionTimeout: limits.idleTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    return503OnClosing: true,
    // URL-level failures (bad percent-encoding, over-long params) get the same error contract.
    frameworkErrors: (err: FastifyError, _req: unknown, reply: FastifyReply) =>
      sendError(
        reply,
        new SigilError(
          err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'not_found' : 'bad_request',
          'the request URL is malformed',
        ),
      ),
  }) as unknown as FastifyInstance;
  // JSON only: fastify's default text/plain parser would hand handlers a string.
  app.removeContentTypeParser('text/plain');
  if (fastRenew) {
    // Renewals whose headers show a plain JSON body skip fastify's pipeline (./fast-route.ts);
    // every other request, and any renewal fastify would refuse before parsing, goes through it.
    let closing = false;
    app.addHook('preClose', async () => {
      closing = true;
    });
    installFastRoute(app.server as unknown as import('node:http').Server, {
      ctx,
      op: OPERATIONS.renew,
      bodyLimit: MAX_BODY_BYTES,
      closing: () => closing,
    });
  }
  trackConnectionsPerSource(app.server, limits.maxConnsPerSource, ctx.log);

  app.setErrorHandler(async (err: FastifyError | SigilError | Error, req, reply) => {
    if (err instanceof SigilError) return sendError(reply, err);
    const fe = err as FastifyError;
    const mapped = fe.code ? FASTIFY_CODE_MAP[fe.code] : undefined;
    let e: SigilError;
    if (mapped)
      e = new SigilError(
        mapped,
        mapped === 'body_too_large'
          ? `the request body exceeds ${req.routeOptions.bodyLimit ?? MAX_BODY_BYTES} bytes`
          : undefined,
      );
    else if (err instanceof SyntaxError || fe.statusCode === 400) e = new SigilError('malformed_json');
    else {
      ctx.log.error({ err }, 'unhandled error in HTTPS handler');
      return sendError(reply, toSigilError(err));
    }
    // Refused before reaching an operation (parsing, size, media type): audit and count it too.
    const op = opOfRoute(req.routeOptions.url);
    if (op?.audited) await auditRefusal(ctx, op.name, e, { remote: req.ip });
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const known =
      [
        ...OPERATION_LIST.map((o) => routeOf(o.name)),
        '/v1/bundle/spiffe',
        '/v1/jwks',
        ...(crl ? ['/v1/crl'] : []),
        '/.well-known/openid-configuration',
        '/healthz',
        '/readyz',
        '/metrics',
      ].includes(path) || path.startsWith('/v1/admin/');
    if (known) return sendError(reply, new SigilError('method_not_allowed', `${req.method} is not allowed on ${path}`));
    return sendError(reply, new SigilError('not_found', `no route ${req.method} ${path}`));
  });

  const remoteOf = (req: { ip: string }): string => req.ip;

  // Requests by transport (the MQTT responder counts its own): op from the route, outcome from
  // the status (an error body's code is not at hand here, so refusals count as `http_<status>`).
  app.addHook('onResponse', async (req, reply) => {
    const op = opOfRoute(req.routeOptions.url);
    if (op)
      ctx.metrics.requests.inc({
        transport: 'https',
        op: op.name,
        outcome: reply.statusCode === 200 ? 'ok' : `http_${reply.statusCode}`,
      });
  });

  // Per-source join rate (RFC 6585 §4): checked on request, before the body is read or parsed.
  // Not audited: a flood must not turn into a flood of audit rows; it shows in metrics (http_429).
  const joinLimiter = new RateLimiter({ ratePerS: limits.joinRatePerS, burst: limits.joinBurst });
  const limitJoin = async (req: { ip: string }): Promise<void> => {
    const d = joinLimiter.take(remoteOf(req));
    if (!d.ok)
      throw new SigilError(
        'rate_limited',
        `too many join requests from ${remoteOf(req)}; retry in ${d.retryAfterMs} ms`,
        { retryAfterMs: d.retryAfterMs },
      );
  };
  // One route per operation. TLS to the pinned CA makes the carrier confidential end to end.
  for (const op of OPERATION_LIST) {
    app.route({
      method: op.takesBody ? 'POST' : 'GET',
      url: routeOf(op.name),
      ...(op.rateLimited ? { onRequest: limitJoin } : {}),
      handler: async (req) =>
        op.handle(ctx, {
          body: op.takesBody ? req.body : undefined,
          remote: remoteOf(req),
          confidential: true,
          carrier: 'https',
        }),
    });
  }
  // Public trust material for relying parties (server/credentials/discovery.ts), cacheable.
  // Not while the JWT-SVID key is halted (server/key-reload.ts): the key set without it must not
  // be cached for minutes by a verifier once the new key is in place.
  const publicJson = (doc: () => unknown) => async (_req: unknown, reply: FastifyReply) =>
    reply
      .header('cache-control', ctx.credentials.halted.has('jwt') ? 'no-store' : `public, max-age=${KEYS_MAX_AGE_S}`)
      .type('application/json')
      .send(doc());
  app.get(
    '/.well-known/openid-configuration',
    publicJson(() => openIdConfiguration(ctx)),
  );
  app.get(
    '/v1/jwks',
    publicJson(() => jwks(ctx)),
  );
  app.get(
    '/v1/bundle/spiffe',
    publicJson(() => spiffeBundle(ctx)),
  );
  // The CRL (RFC 5280 §5; docs/crl.md): DER as RFC 2585 §4 serves it over HTTP. Public, so
  // limited per source; each answer first looks for lock changes (server/crl/publisher.ts).
  if (crl) {
    const crlLimiter = new RateLimiter({ ...CRL_FETCH_LIMIT });
    app.get(
      '/v1/crl',
      {
        onRequest: async (req: { ip: string }) => {
          const d = crlLimiter.take(remoteOf(req));
          if (!d.ok)
            throw new SigilError(
              'rate_limited',
              `too many CRL requests from ${remoteOf(req)}; retry in ${d.retryAfterMs} ms`,
              {
                retryAfterMs: d.retryAfterMs,
              },
            );
        },
      },
      async (_req, reply) => {
        const c = await crl.current();
        const maxAge = Math.max(0, Math.min(60, Math.floor((c.nextUpdate - ctx.now()) / 1000)));
        return reply
          .header('cache-control', `public, max-age=${maxAge}`)
          .header('last-modified', new Date(c.madeAt).toUTCString())
          .header('etag', `"${c.crlNumber.toString()}"`)
          .type('application/pkix-crl')
          .send(c.der);
      },
    );
  }
  app.get('/healthz', async () => ({ status: 'ok', trust_domain: ctx.ca.trustDomain }));
  // Readiness for load balancers (issue #15): the CA is loaded (ctx exists only then) and the store
  // answers a read within READY_TIMEOUT_MS. On PostgreSQL a store call also fails until the
  // migrations ran and the audit key matched, so "answers" covers "migrations current".
  app.get('/readyz', async (_req, reply) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ctx.stores.audit.head(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new SigilError('store_unavailable', `the store did not answer within ${READY_TIMEOUT_MS} ms`)),
            READY_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (e) {
      return sendError(reply, e instanceof SigilError ? e : new SigilError('store_unavailable'));
    } finally {
      clearTimeout(timer);
    }
    // A WAL flush that failed: the store answers reads but refuses every write until a restart.
    const lost = ctx.stores.durabilityFailure?.();
    if (lost) return sendError(reply, lost);
    // A halted signing key (server/key-reload.ts): a load balancer sends agents to an issuer that
    // can sign their SSH and JWT credentials. /healthz still answers: the process is alive.
    const halted = [...ctx.credentials.halted.keys()];
    if (halted.length > 0)
      return sendError(
        reply,
        new SigilError(
          'signing_key_withdrawn',
          `not ready: the ${halted.join(', ')} signing key${halted.length > 1 ? 's were' : ' was'} withdrawn by a compromise rotation and the replacement is not in place here yet`,
        ),
      );
    return { status: 'ready', trust_domain: ctx.ca.trustDomain };
  });
  app.get('/metrics', async (_req, reply) =>
    reply.type('text/plain; version=0.0.4').send(await ctx.metrics.registry.scrape()),
  );

  // Admin API: never open. Bearer credential compared in constant time against its stored hash,
  // on request — before a body of up to ADMIN_MAX_BODY_BYTES is read and parsed.
  const adminAuth = async (req: { headers: { authorization?: string | undefined }; ip: string }): Promise<void> => {
    const auth = req.headers.authorization ?? '';
    const stored = await ctx.stores.admin.getAdminTokenHash();
    // RFC 7235 §2.1: the auth scheme is case-insensitive.
    const presented = /^bearer /i.test(auth) ? sha256Hex(auth.slice(7).trim()) : '';
    if (!stored || !constantTimeEqual(presented, stored)) {
      const e = new SigilError(
        'unauthorized',
        'missing or invalid admin credential (Authorization: Bearer <contents of DATA_DIR/admin.token>)',
      );
      await auditRefusal(ctx, 'admin', e, { remote: remoteOf(req) });
      throw e;
    }
  };
  // `apply` takes policy files up to the size its schema allows (server/admin/ops.ts).
  app.post('/v1/admin/:op', { onRequest: adminAuth, bodyLimit: ADMIN_MAX_BODY_BYTES }, async (req) => {
    const op = (req.params as { op: string }).op;
    // Audited with the caller's address, refusals included (server/admin/audited.ts).
    return {
      result: await runAdminCall(
        ctx.stores,
        op,
        req.body ?? {},
        ctx.now(),
        { remote: remoteOf(req), auditReads: true },
        ctx.auditEnv,
      ),
    };
  });
  return app;
}
