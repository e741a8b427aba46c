/**
 * The fleet view's POSTs: sign in, sign out, lock and unlock an instance, walk the audit chain.
 * Every one but sign-in goes through formSession (same origin, CSRF token, role); every change is
 * audited with who (`ui:<user>`, the role) and from where (the client address).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SigilError } from '../../errors.js';
import { capMessage, capText } from '../../util/untrusted-text.js';
import { sha256Hex } from '../../util/secret.js';
import { runAdminCall } from '../admin/audited.js';
import { auditRefusal } from '../ops/refusal.js';
import { storesActingAs } from './actor.js';
import { checkSameOrigin } from './csrf.js';
import type { FleetUi } from './fleet-ui.js';
import { machineHref } from './html.js';
import { signInPage } from './pages/sign-in.js';
import {
  CLEARED_SESSION_COOKIE,
  formSession,
  originOf,
  safeNext,
  sessionCookie,
  sessionIdOf,
  type Form,
} from './request.js';
import { sendPage } from './send-page.js';
import { credentialFingerprint, matchCredential } from './viewer-credentials.js';

const formOf = (req: FastifyRequest): Form => {
  if (typeof req.body !== 'object' || req.body === null)
    throw new SigilError('unsupported_media_type', 'forms are sent as application/x-www-form-urlencoded');
  return req.body as Form;
};

export function registerUiActions(scope: FastifyInstance, ui: FleetUi): void {
  const { ctx } = ui;

  scope.post('/sign-in', async (req, reply) => {
    const form = formOf(req);
    const next = safeNext(form['next']);
    const remote = req.ip;
    // Login CSRF: another site must not sign the operator's browser in as someone else.
    checkSameOrigin(originOf(req));
    const token = form['token'] ?? '';
    const who =
      token.length > 0 && token.length <= 200
        ? matchCredential(token, await ctx.stores.admin.getAdminTokenHash(), ui.viewers.entries())
        : undefined;
    // A right credential signs in even from a throttled address: only failures are limited. The
    // address may be a reverse proxy's or a NAT's, shared by every operator, and one client
    // failing on purpose must not keep them all out (review of issue #16). With 256-bit random
    // tokens, telling a throttled guesser that a guess was right tells it nothing it can use.
    const wait = who ? 0 : ui.throttle.retryAfterMs(remote);
    if (wait > 0) {
      const s = Math.ceil(wait / 1000);
      reply.header('retry-after', s);
      return sendPage(
        ui,
        reply,
        {
          title: 'Sign in',
          body: signInPage({
            next,
            message: `Too many failed sign-ins from ${remote}; try again in ${s} s.`,
          }),
        },
        429,
      );
    }
    if (!who) {
      ui.throttle.failed(remote);
      // Unauthenticated: sampled like the admin API's refusals (ops/refusal.ts), so a flood is a summary.
      await auditRefusal(
        ctx,
        'ui_sign_in',
        new SigilError('unauthorized', 'fleet view sign-in with a wrong credential'),
        { remote },
      );
      return sendPage(
        ui,
        reply,
        { title: 'Sign in', body: signInPage({ next, message: 'That credential is not valid.' }) },
        401,
      );
    }
    // Audited first: a sign-in that cannot be recorded does not happen.
    await ctx.stores.audit.append(
      {
        action: 'ui_sign_in',
        outcome: 'ok',
        actor: `ui:${who.user}`,
        remote: capText(remote, 200),
        details: { role: who.role },
      },
      ctx.now(),
    );
    // A session fixed before sign-in (if any) is dropped: the id is always fresh after sign-in.
    await ui.sessions.destroy(sessionIdOf(req));
    const { id } = await ui.sessions.create(
      who.user,
      who.role,
      capText(remote, 200),
      credentialFingerprint(sha256Hex(token.trim())),
    );
    return reply
      .header('set-cookie', sessionCookie(id, Math.floor(ui.sessions.absoluteMs / 1000)))
      .header('cache-control', 'no-store')
      .redirect(next, 303);
  });

  scope.post('/sign-out', async (req, reply) => {
    const s = await formSession(ui, req, reply, formOf(req), { action: 'ui_sign_out', need: 'viewer' });
    if (!s) return reply;
    await ui.sessions.destroy(sessionIdOf(req));
    await ctx.stores.audit.append(
      {
        action: 'ui_sign_out',
        outcome: 'ok',
        actor: `ui:${s.user}`,
        remote: capText(req.ip, 200),
        details: { role: s.role },
      },
      ctx.now(),
    );
    return reply.header('set-cookie', CLEARED_SESSION_COOKIE).redirect('/ui/sign-in', 303);
  });

  const lockRoute =
    (verb: 'lock' | 'unlock') =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      const id = capText((req.params as { id: string }).id, 128);
      const form = formOf(req);
      const s = await formSession(ui, req, reply, form, { action: `ui_${verb}`, need: 'admin', instanceId: id });
      if (!s) return reply;
      const reason = (form['reason'] ?? '').trim();
      if (!reason || reason.length > 500)
        throw new SigilError('bad_request', 'give a reason (1-500 characters): it goes in the audit log');
      // The admin lock operation names a bot or an instance; the view locks instances only, so a
      // bot named like this instance id must not turn the click into a whole-bot lock.
      if (!(await ctx.stores.instances.get(id))) throw new SigilError('not_found', `no instance "${id}"`);
      if (await ctx.stores.resources.get('bot', id))
        throw new SigilError('conflict', `"${id}" also names a bot; lock it with sigil ctl to say which`);
      // The same audited operation as `sigil ctl lock` (server/admin/), its rows attributed to this session.
      const stores = storesActingAs(ctx.stores, {
        actor: `ui:${s.user}`,
        details: { via: 'ui', role: s.role, ...(verb === 'unlock' ? { reason: capMessage(reason) } : {}) },
      });
      await runAdminCall(
        stores,
        verb,
        verb === 'lock' ? { target: id, reason } : { target: id },
        ctx.now(),
        { remote: req.ip, auditReads: false },
        ctx.auditEnv,
      );
      ui.summary.invalidateCounts();
      return reply.redirect(`${machineHref(id)}?done=${verb}ed`, 303);
    };
  scope.post('/machine/:id/lock', lockRoute('lock'));
  scope.post('/machine/:id/unlock', lockRoute('unlock'));

  scope.post('/audit/verify', async (req, reply) => {
    const form = formOf(req);
    const s = await formSession(ui, req, reply, form, { action: 'ui_audit_verify', need: 'viewer' });
    if (!s) return reply;
    await ui.chain.run(form['from'] === 'start');
    return reply.redirect('/ui/audit', 303);
  });
}
