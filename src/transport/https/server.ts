/**
 * The issuer's HTTPS adapter (fastify). It only moves bytes: parse JSON within limits, call
 * the operation, map SigilError codes to status + {code, message, retryable}. Internal errors
 * never leak a message or a stack trace to the client.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { SigilError, toSigilError, type ErrorCode } from '../../errors.js';
import { runAdminOp } from '../../server/admin/ops.js';
import { rotateServerIdentity, SERVER_IDENTITY_ROTATE_MS, type IssuerContext } from '../../server/issuer.js';
import { jwks, KEYS_MAX_AGE_S, openIdConfiguration, spiffeBundle } from '../../server/credentials/discovery.js';
import { handleBundle } from '../../server/ops/bundle.js';
import { handleCredential } from '../../server/ops/credential.js';
import { handleJoin } from '../../server/ops/join.js';
import { auditRefusal } from '../../server/ops/refusal.js';
import { handleRenew } from '../../server/ops/renew.js';
import { constantTimeEqual, sha256Hex } from '../../util/secret.js';

/** Requests are small signed JSON documents; 64 KiB leaves room for long chains. */
export const MAX_BODY_BYTES = 64 * 1024;

const FASTIFY_CODE_MAP: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
};

function sendError(reply: FastifyReply, e: SigilError): FastifyReply {
  if (e.retryAfterMs !== undefined) reply.header('retry-after', Math.ceil(e.retryAfterMs / 1000));
  return reply.code(e.status).type('application/json').send(e.toWire());
}

export interface HttpsServerOptions {
  ctx: IssuerContext;
  /** Set to false in tests that want plain HTTP; production always uses TLS. */
  tls?: boolean;
}

export function buildHttpsServer({ ctx, tls = true }: HttpsServerOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY_BYTES,
    ...(tls ? { https: { key: ctx.server.keyPem, cert: ctx.server.certPem, minVersion: 'TLSv1.2' as const } } : {}),
    keepAliveTimeout: 30_000,
    return503OnClosing: true,
    // URL-level failures (bad percent-encoding, over-long params) get the same error contract.
    frameworkErrors: (err: FastifyError, _req: unknown, reply: FastifyReply) =>
      sendError(reply, new SigilError(err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'not_found' : 'bad_request', 'the request URL is malformed')),
  }) as unknown as FastifyInstance;
  // JSON only: fastify's default text/plain parser would hand handlers a string.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err: FastifyError | SigilError | Error, req, reply) => {
    if (err instanceof SigilError) return sendError(reply, err);
    const fe = err as FastifyError;
    const mapped = fe.code ? FASTIFY_CODE_MAP[fe.code] : undefined;
    let e: SigilError;
    if (mapped) e = new SigilError(mapped, mapped === 'body_too_large' ? `the request body exceeds ${MAX_BODY_BYTES} bytes` : undefined);
    else if (err instanceof SyntaxError || fe.statusCode === 400) e = new SigilError('malformed_json');
    else {
      ctx.log.error({ err }, 'unhandled error in HTTPS handler');
      return sendError(reply, toSigilError(err));
    }
    // Refused before reaching an operation (parsing, size, media type): audit and count it too.
    const op = /^\/v1\/(join|renew|credential)$/.exec(req.routeOptions.url ?? '')?.[1];
    if (op) auditRefusal(ctx, op, e, { remote: req.ip });
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const known = ['/v1/join', '/v1/renew', '/v1/credential', '/v1/bundle', '/v1/bundle/spiffe', '/v1/jwks', '/.well-known/openid-configuration', '/healthz', '/metrics'].includes(path) || path.startsWith('/v1/admin/');
    if (known) return sendError(reply, new SigilError('method_not_allowed', `${req.method} is not allowed on ${path}`));
    return sendError(reply, new SigilError('not_found', `no route ${req.method} ${path}`));
  });

  if (tls) {
    const timer = setInterval(() => {
      try {
        const id = rotateServerIdentity(ctx);
        (app.server as unknown as import('node:https').Server).setSecureContext({ key: id.keyPem, cert: id.certPem, minVersion: 'TLSv1.2' });
        ctx.log.info({ not_after: new Date(id.notAfter).toISOString() }, 'rotated the issuer serving certificate');
      } catch (err) {
        ctx.log.error({ err }, 'could not rotate the issuer serving certificate');
      }
    }, SERVER_IDENTITY_ROTATE_MS);
    timer.unref();
    app.addHook('onClose', async () => clearInterval(timer));
  }

  const remoteOf = (req: { ip: string }): string => req.ip;

  // Requests by transport (the MQTT responder counts its own): op from the route, outcome from
  // the status (an error body's code is not at hand here, so refusals count as `http_<status>`).
  app.addHook('onResponse', async (req, reply) => {
    const op = /^\/v1\/(join|renew|bundle|credential)$/.exec(req.routeOptions.url ?? '')?.[1];
    if (op) ctx.metrics.requests.inc({ transport: 'https', op, outcome: reply.statusCode === 200 ? 'ok' : `http_${reply.statusCode}` });
  });

  app.post('/v1/join', async (req) => handleJoin(ctx, req.body, remoteOf(req)));
  app.post('/v1/renew', async (req) => handleRenew(ctx, req.body, remoteOf(req)));
  app.get('/v1/bundle', async () => handleBundle(ctx));
  app.post('/v1/credential', async (req) => handleCredential(ctx, req.body, remoteOf(req)));
  // Public trust material for relying parties (server/credentials/discovery.ts), cacheable.
  const publicJson = (doc: () => unknown) => async (_req: unknown, reply: FastifyReply) =>
    reply.header('cache-control', `public, max-age=${KEYS_MAX_AGE_S}`).type('application/json').send(doc());
  app.get('/.well-known/openid-configuration', publicJson(() => openIdConfiguration(ctx)));
  app.get('/v1/jwks', publicJson(() => jwks(ctx)));
  app.get('/v1/bundle/spiffe', publicJson(() => spiffeBundle(ctx)));
  app.get('/healthz', async () => ({ status: 'ok', trust_domain: ctx.ca.trustDomain }));
  app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(ctx.metrics.registry.render()));

  // Admin API: never open. Bearer credential compared in constant time against its stored hash.
  app.post('/v1/admin/:op', async (req) => {
    const auth = req.headers.authorization ?? '';
    const stored = ctx.stores.admin.getAdminTokenHash();
    // RFC 7235 §2.1: the auth scheme is case-insensitive.
    const presented = /^bearer /i.test(auth) ? sha256Hex(auth.slice(7).trim()) : '';
    if (!stored || !constantTimeEqual(presented, stored)) {
      const e = new SigilError('unauthorized', 'missing or invalid admin credential (Authorization: Bearer <contents of DATA_DIR/admin.token>)');
      auditRefusal(ctx, 'admin', e, { remote: remoteOf(req) });
      throw e;
    }
    const op = (req.params as { op: string }).op;
    return { result: runAdminOp(ctx.stores, op, req.body ?? {}, ctx.now()) };
  });
  return app;
}
