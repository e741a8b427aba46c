/**
 * The fleet view's routes under /ui/ (issue #18), registered on the issuer's HTTPS listener as an
 * encapsulated fastify plugin: its form parser, error page and headers apply to /ui/ only, the
 * protocol and admin routes are untouched. Pages are GET (filters are query strings); every
 * change is a POST guarded by ./request.ts formSession (./actions.ts).
 */
import type { FastifyInstance } from 'fastify';
import { SigilError, toSigilError } from '../../errors.js';
import { registerUiActions } from './actions.js';
import { ACTIVITY_BUCKET_MS, AGE_EDGES_MS, ageBins } from './chart-data.js';
import { parseFleetFilter, toFleetQuery } from './fleet-query.js';
import type { FleetUi } from './fleet-ui.js';
import { SECURITY_HEADERS } from './headers.js';
import { sendPage } from './send-page.js';
import { auditPage, parseAuditFilter } from './pages/audit.js';
import { fleetPage } from './pages/fleet.js';
import { machinePage } from './pages/machine.js';
import { errorPage, signInPage } from './pages/sign-in.js';
import { pageSession, parseForm, queryOf, safeNext, sessionIdOf } from './request.js';

/** Forms are a few fields; the lock reason is the longest (500 chars). */
const FORM_BODY_LIMIT = 16 * 1024;

export function registerFleetUi(app: FastifyInstance, ui: FleetUi): void {
  void app.register(
    async (scope) => {
      // Forms only: a JSON body (the parent's parser) would hand the handlers non-string fields.
      scope.removeContentTypeParser('application/json');
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
        (_req, body, done) => {
          try {
            done(null, parseForm(body as string));
          } catch (e) {
            done(e as Error, undefined);
          }
        },
      );
      scope.addHook('onRequest', async (_req, reply) => {
        reply.headers(SECURITY_HEADERS);
      });
      // The handler's time, for the bench and for operators (W3C Server Timing).
      scope.addHook('onSend', async (_req, reply, payload) => {
        reply.header('server-timing', `app;dur=${reply.elapsedTime.toFixed(1)}`);
        return payload;
      });
      scope.setErrorHandler(async (err, _req, reply) => {
        const e = err instanceof SigilError ? err : mapFastifyError(err);
        if (e.code === 'internal') ui.ctx.log.error({ err }, 'fleet view: unhandled error');
        return sendPage(
          ui,
          reply,
          { title: 'Error', body: errorPage({ status: e.status, code: e.code, message: e.message }) },
          e.status,
        );
      });
      scope.setNotFoundHandler(async (req, reply) =>
        sendPage(
          ui,
          reply,
          {
            title: 'Not found',
            body: errorPage({
              status: 404,
              code: 'not_found',
              message: `no page ${req.url.split('?')[0] ?? ''}`.slice(0, 200),
            }),
          },
          404,
        ),
      );

      scope.get('/static/:name', async (req, reply) => {
        const f = ui.assets.get((req.params as { name: string }).name);
        if (!f) throw new SigilError('not_found', 'no such asset');
        return reply.header('cache-control', 'public, max-age=86400').type(f.type).send(f.body);
      });

      scope.get('/sign-in', async (req, reply) => {
        const next = safeNext(queryOf(req).get('next'));
        if (await ui.sessions.touch(sessionIdOf(req))) return reply.redirect(next, 303);
        return sendPage(ui, reply, { title: 'Sign in', body: signInPage({ next }) });
      });

      scope.get('/', async (req, reply) => {
        const session = await pageSession(ui, req, reply);
        if (!session) return reply;
        const { ctx } = ui;
        const filter = parseFleetFilter(queryOf(req));
        const now = ctx.now();
        const [counts, page, bots, charts] = await Promise.all([
          ui.summary.counts(),
          ctx.stores.fleet.page(toFleetQuery(filter, now)),
          ctx.stores.resources.list('bot'),
          ui.summary.charts(),
        ]);
        const body = fleetPage({
          filter,
          counts,
          rows: page.rows,
          total: page.total,
          bots: bots.map((b) => b.name),
          methods: ctx.methods.names(),
          activity: charts.activity,
          activityBucketMs: ACTIVITY_BUCKET_MS,
          ages: { bins: ageBins(AGE_EDGES_MS, charts.ages.length), counts: charts.ages },
          chartsAt: charts.at,
          now,
        });
        return sendPage(ui, reply, { title: 'Fleet', nav: 'fleet', session, body });
      });

      scope.get('/machine/:id', async (req, reply) => {
        const session = await pageSession(ui, req, reply);
        if (!session) return reply;
        const { ctx } = ui;
        const id = (req.params as { id: string }).id;
        const inst = id.length <= 128 ? await ctx.stores.instances.get(id) : undefined;
        if (!inst) throw new SigilError('not_found', `no instance "${id.slice(0, 128)}"`);
        const fleet = ctx.stores.fleet;
        const [certificates, attests, renewRefusals, credentialRows, events] = await Promise.all([
          ctx.stores.certificates.listByInstance(inst.id),
          fleet.audit({ instanceId: inst.id, action: 'attest', limit: 50 }),
          fleet.audit({ instanceId: inst.id, action: 'renew', outcome: 'refused', limit: 50 }),
          fleet.audit({ instanceId: inst.id, action: 'credential', limit: 50 }),
          fleet.audit({ instanceId: inst.id, limit: 100 }),
        ]);
        const done = queryOf(req).get('done');
        const body = machinePage({
          inst,
          certificates,
          attestationRows: [...attests, ...renewRefusals].sort((a, b) => b.seq - a.seq),
          credentialRows,
          events,
          session,
          now: ctx.now(),
          ...(done === 'locked' || done === 'unlocked' ? { notice: `Instance ${done}.` } : {}),
        });
        return sendPage(ui, reply, { title: inst.id, nav: 'fleet', session, body });
      });

      scope.get('/audit', async (req, reply) => {
        const session = await pageSession(ui, req, reply);
        if (!session) return reply;
        const { filter, query } = parseAuditFilter(queryOf(req));
        const [rows, head] = await Promise.all([ui.ctx.stores.fleet.audit(query), ui.ctx.stores.audit.head()]);
        const body = auditPage({ filter, rows, head, chain: ui.chain.last, session, now: ui.ctx.now() });
        return sendPage(ui, reply, { title: 'Audit', nav: 'audit', session, body });
      });

      registerUiActions(scope, ui);
    },
    { prefix: '/ui' },
  );
}

/** Fastify's own failures (body too large, bad media type) in the view's words. */
function mapFastifyError(err: unknown): SigilError {
  const code = (err as { code?: string }).code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new SigilError('body_too_large', 'the form is too large');
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return new SigilError('unsupported_media_type', 'forms are sent as application/x-www-form-urlencoded');
  return toSigilError(err);
}
