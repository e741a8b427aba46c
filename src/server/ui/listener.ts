/**
 * `--ui-listen HOST:PORT`: the fleet view on a listener of its own (e.g. on a management network
 * only, while agents reach the issuer on another address). Same TLS as the protocol listener
 * (the issuer's serving certificate, AEAD suites only, TLS 1.2+) and rotated with it
 * (IssuerService calls presentServerIdentity on both); only /ui/ is served here.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { TLS_CIPHERS } from '../../transport/https/server.js';
import type { FleetUi } from './fleet-ui.js';
import { registerFleetUi } from './routes.js';

export function buildUiServer(ui: FleetUi): FastifyInstance {
  const app = Fastify({
    logger: false,
    https: {
      key: ui.ctx.server.keyPem,
      cert: ui.ctx.server.certPem,
      minVersion: 'TLSv1.2',
      ciphers: TLS_CIPHERS,
      honorCipherOrder: true,
      handshakeTimeout: 10_000,
    },
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    return503OnClosing: true,
  }) as unknown as FastifyInstance;
  app.removeContentTypeParser('text/plain');
  app.removeContentTypeParser('application/json');
  app.get('/', async (_req, reply) => reply.redirect('/ui/', 303));
  registerFleetUi(app, ui);
  return app;
}
