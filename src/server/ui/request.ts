/**
 * Request plumbing of the fleet view: the session cookie, form bodies, the `next` target after
 * sign-in, and the guard every page and form goes through.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { SigilError } from '../../errors.js';
import { checkCsrfToken, checkSameOrigin, CSRF_FIELD } from './csrf.js';
import type { FleetUi } from './fleet-ui.js';
import type { UiSession } from './session.js';
import { capMessage, capText } from '../../util/untrusted-text.js';

/**
 * `__Host-` (RFC 6265bis §4.1.3.2): the browser keeps it only if it is Secure, has Path=/ and no
 * Domain — so no sibling subdomain can set or shadow it. HttpOnly: script cannot read it (XSS
 * cannot steal the session); SameSite=Strict: no other site's request carries it (CSRF).
 */
export const SESSION_COOKIE = '__Host-sigil-session';

export function sessionCookie(id: string, maxAgeS: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}`;
}

export const CLEARED_SESSION_COOKIE = `${SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`;

export function sessionIdOf(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A form body (application/x-www-form-urlencoded): one value per field; a repeated field is refused. */
export type Form = Record<string, string>;

export function parseForm(body: string): Form {
  const out: Form = Object.create(null) as Form;
  for (const [k, v] of new URLSearchParams(body)) {
    if (k in out) throw new SigilError('bad_request', `the form field "${k.slice(0, 40)}" is given more than once`);
    out[k] = v;
  }
  return out;
}

/** Where to go after sign-in: a path of this view only (no open redirect to another site). */
export function safeNext(v: unknown): string {
  return typeof v === 'string' && /^\/ui\/[^\s\\]{0,500}$/.test(v) && !v.startsWith('/ui//') ? v : '/ui/';
}

export function queryOf(req: FastifyRequest): URLSearchParams {
  const q = req.url.indexOf('?');
  return new URLSearchParams(q >= 0 ? req.url.slice(q + 1) : '');
}

/** Not signed in (or the session expired): to the sign-in form, coming back here afterwards. */
export function redirectToSignIn(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const back = req.method === 'GET' ? safeNext(req.url) : '/ui/';
  return reply.redirect(`/ui/sign-in?next=${encodeURIComponent(back)}`, 303);
}

/** The live session of a GET, or undefined after redirecting to sign-in. */
export async function pageSession(
  ui: FleetUi,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<UiSession | undefined> {
  const s = await ui.sessions.touch(sessionIdOf(req));
  if (!s) redirectToSignIn(req, reply);
  return s;
}

/**
 * A POST from a session: same origin, this session's CSRF token, and (for changes) the admin role —
 * in that order, every time, on the server. A refusal is audited (who, from where, which check)
 * and thrown; undefined means no live session (redirected to sign-in, nothing done).
 */
export async function formSession(
  ui: FleetUi,
  req: FastifyRequest,
  reply: FastifyReply,
  form: Form,
  what: { action: string; need: 'viewer' | 'admin'; instanceId?: string },
): Promise<UiSession | undefined> {
  const s = await ui.sessions.touch(sessionIdOf(req));
  if (!s) {
    redirectToSignIn(req, reply);
    return undefined;
  }
  try {
    checkSameOrigin(originOf(req));
    checkCsrfToken(s.csrf, form[CSRF_FIELD]);
    if (what.need === 'admin' && s.role !== 'admin')
      throw new SigilError(
        'ui_role_forbidden',
        `${s.user} is signed in as a viewer; locking and unlocking need the admin role`,
      );
  } catch (e) {
    const err = e as SigilError;
    await ui.ctx.stores.audit.append(
      {
        action: what.action,
        outcome: 'refused',
        code: err.code,
        actor: `ui:${s.user}`,
        remote: capText(req.ip, 200),
        instanceId: what.instanceId ?? null,
        details: { role: s.role, message: capMessage(err.message) },
      },
      ui.ctx.now(),
    );
    throw e;
  }
  return s;
}

export function originOf(req: FastifyRequest): Parameters<typeof checkSameOrigin>[0] {
  const h = (k: string): string | undefined => {
    const v = req.headers[k];
    return typeof v === 'string' ? v : undefined;
  };
  return { host: h('host'), origin: h('origin'), referer: h('referer'), fetchSite: h('sec-fetch-site') };
}
