/**
 * The fleet view's routes in process (fastify inject): sign-in and sessions, CSRF and origin,
 * roles, escaping, headers, lock/unlock through the audited admin operation. The same attacks
 * through a real browser: test/e2e/fleet-ui.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../../src/server/admin/ops.js';
import { issueViewerToken, revokeViewerToken } from '../../../src/server/ui/viewer-credentials.js';
import { sha256Hex } from '../../../src/util/secret.js';
import { post, signIn, startUiRig, type UiRig } from './ui-rig.js';

const XSS_BOT = '<script>alert(1)</script>';

describe('fleet view routes', () => {
  let rig: UiRig;
  beforeAll(async () => {
    rig = await startUiRig();
    await rig.addInstance({ id: 'inst-a' });
    await rig.addInstance({
      id: 'inst-bad',
      facts: {
        firmware_profile: 'fw-2025-03',
        attestation: {
          at: Date.now(),
          ok: false,
          via: 'attest',
          profile: 'fw-2025-03',
          check: 'pcr_mismatch',
          message: 'PCR 7 differs',
          diff: [{ bank: 'sha256', pcr: 7, expected: ['aa'.repeat(32)], got: 'bb'.repeat(32) }],
        },
      },
    });
    await rig.addInstance({ id: 'inst-xss', bot: XSS_BOT, facts: { note: '"><img src=x onerror=alert(1)>' } });
  });
  afterAll(() => rig.close());

  it('sends every page with the CSP and the other security headers, never cached', async () => {
    const r = await rig.app.inject({ method: 'GET', url: '/ui/sign-in' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-security-policy']).toBe(
      "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.body).not.toMatch(/<script>|style="|\son[a-z]+=/);
  });

  it('serves the local CSS and JS with their types', async () => {
    const page = await rig.app.inject({ method: 'GET', url: '/ui/sign-in' });
    const css = /href="(\/ui\/static\/ui\.css\?v=[0-9a-f]+)"/.exec(page.body)![1]!;
    const js = /src="(\/ui\/static\/ui\.js\?v=[0-9a-f]+)"/.exec(page.body)![1]!;
    const c = await rig.app.inject({ method: 'GET', url: css });
    expect(c.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(c.headers['content-security-policy']).toBeDefined();
    const j = await rig.app.inject({ method: 'GET', url: js });
    expect(j.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await rig.app.inject({ method: 'GET', url: '/ui/static/../admin.token' })).statusCode).toBe(404);
  });

  it('redirects to sign-in without a session, and back after it', async () => {
    const r = await rig.app.inject({ method: 'GET', url: '/ui/machine/inst-a' });
    expect(r.statusCode).toBe(303);
    expect(r.headers.location).toBe('/ui/sign-in?next=%2Fui%2Fmachine%2Finst-a');
  });

  it('signs in with the admin credential: a __Host- cookie, HttpOnly, Secure, SameSite=Strict', async () => {
    const r = await post(rig, '/ui/sign-in', undefined, { token: rig.adminToken, next: '/ui/audit' });
    expect(r.statusCode).toBe(303);
    expect(r.headers.location).toBe('/ui/audit');
    const cookie = String(r.headers['set-cookie']);
    expect(cookie).toMatch(
      /^__Host-sigil-session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=\d+$/,
    );
    const rows = await rig.ctx.stores.fleet.audit({ action: 'ui_sign_in', limit: 5 });
    expect(rows[0]).toMatchObject({ outcome: 'ok', actor: 'ui:admin', remote: '127.0.0.1' });
  });

  it('never redirects off the view after sign-in (open redirect)', async () => {
    for (const next of ['https://evil.example/', '//evil.example/', '/ui//evil.example', '/\\evil.example']) {
      const r = await post(rig, '/ui/sign-in', undefined, { token: rig.adminToken, next });
      expect(r.headers.location).toBe('/ui/');
    }
  });

  it('refuses a wrong credential with 401, audits it, and throttles the source after 5 failures', async () => {
    const headers = { 'x-forwarded-for': 'ignored' };
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await post(rig, '/ui/sign-in', undefined, { token: `wrong-${i}` }, headers)).statusCode);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
    // Throttled: a wrong credential waits…
    const r = await post(rig, '/ui/sign-in', undefined, { token: 'wrong-again' });
    expect(r.statusCode).toBe(429);
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    // …but the right one signs in: the address may be a proxy's or a NAT's that every operator
    // shares, and one client failing on purpose must not keep them out (review of issue #16).
    const ok = await post(rig, '/ui/sign-in', undefined, { token: rig.adminToken });
    expect(ok.statusCode).toBe(303);
    expect(String(ok.headers['set-cookie'])).toMatch(/__Host-/);
    const refused = await rig.ctx.stores.fleet.audit({ action: 'ui_sign_in', outcome: 'refused', limit: 10 });
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.code).toBe('unauthorized');
    rig.clock.offsetMs += 10 * 60_000;
  });

  it('takes forms only: a JSON body is refused 415', async () => {
    const r = await rig.app.inject({
      method: 'POST',
      url: '/ui/sign-in',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ token: [rig.adminToken] }),
    });
    expect(r.statusCode).toBe(415);
  });

  it('refuses a sign-in posted from another origin (login CSRF)', async () => {
    const r = await post(rig, '/ui/sign-in', undefined, { token: rig.adminToken }, { origin: 'https://evil.example' });
    expect(r.statusCode).toBe(403);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('gives a fresh session id at sign-in: a cookie from before stops working (session fixation)', async () => {
    const before = await signIn(rig);
    const again = await rig.app.inject({
      method: 'POST',
      url: '/ui/sign-in',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: before.cookie },
      payload: new URLSearchParams({ token: rig.adminToken }).toString(),
    });
    expect(String(again.headers['set-cookie']).split(';')[0]).not.toBe(before.cookie);
    const old = await rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie: before.cookie } });
    expect(old.statusCode).toBe(303);
  });

  it('renders a hostile bot name and facts as text', async () => {
    const who = await signIn(rig);
    const fleet = await rig.app.inject({ method: 'GET', url: '/ui/?q=inst-xss', headers: { cookie: who.cookie } });
    expect(fleet.statusCode).toBe(200);
    expect(fleet.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(fleet.body).not.toContain(XSS_BOT);
    const m = await rig.app.inject({ method: 'GET', url: '/ui/machine/inst-xss', headers: { cookie: who.cookie } });
    expect(m.body).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
    expect(m.body).not.toContain('<img');
    expect(m.body).not.toContain(XSS_BOT);
  });

  it('filters to failed attestation and shows the PCR diff', async () => {
    const who = await signIn(rig);
    const f = await rig.app.inject({
      method: 'GET',
      url: '/ui/?state=attestation_failed',
      headers: { cookie: who.cookie },
    });
    expect(f.body).toContain('href="/ui/machine/inst-bad"');
    expect(f.body).not.toContain('href="/ui/machine/inst-a"');
    const m = await rig.app.inject({ method: 'GET', url: '/ui/machine/inst-bad', headers: { cookie: who.cookie } });
    expect(m.body).toContain('pcr_mismatch');
    expect(m.body).toContain('aa'.repeat(32));
    expect(m.body).toContain('bb'.repeat(32));
  });

  it('refuses a bad filter with the field named', async () => {
    const who = await signIn(rig);
    const r = await rig.app.inject({ method: 'GET', url: '/ui/?state=bogus', headers: { cookie: who.cookie } });
    expect(r.statusCode).toBe(400);
    expect(r.body).toContain('unknown state');
  });

  it('locks and unlocks through the audited admin operation, attributed to the session', async () => {
    const who = await signIn(rig);
    const r = await post(rig, '/ui/machine/inst-a/lock', who, { csrf: who.csrf, reason: 'lost in transit' });
    expect(r.statusCode).toBe(303);
    expect(r.headers.location).toBe('/ui/machine/inst-a?done=locked');
    expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(true);
    const [row] = await rig.ctx.stores.fleet.audit({ action: 'lock', instanceId: 'inst-a', limit: 1 });
    expect(row).toMatchObject({ actor: 'ui:admin', remote: '127.0.0.1', outcome: 'ok' });
    expect(row!.details).toMatchObject({ reason: 'lost in transit', via: 'ui', role: 'admin' });
    const u = await post(rig, '/ui/machine/inst-a/unlock', who, { csrf: who.csrf, reason: 'found it' });
    expect(u.statusCode).toBe(303);
    expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(false);
    const [unlock] = await rig.ctx.stores.fleet.audit({ action: 'unlock', instanceId: 'inst-a', limit: 1 });
    expect(unlock!.details).toMatchObject({ reason: 'found it', via: 'ui' });
  });

  it('locks only the instance: a bot named like the instance id is refused, not locked whole', async () => {
    await rig.addInstance({ id: 'twin' });
    await runAdminOp(rig.ctx.stores, 'apply', { yaml: 'kind: bot\nname: twin\nspec: { roles: [edge] }\n' });
    const who = await signIn(rig);
    const r = await post(rig, '/ui/machine/twin/lock', who, { csrf: who.csrf, reason: 'x' });
    expect(r.statusCode).toBe(409);
    expect(await rig.ctx.stores.botLocks.isLocked('twin')).toBe(false);
    expect((await rig.ctx.stores.instances.get('twin'))!.locked).toBe(false);
  });

  it('refuses a POST without or with a wrong CSRF token, or from another origin: 403, nothing changed, audited', async () => {
    const who = await signIn(rig);
    const tries: Array<{ form: Record<string, string>; headers: Record<string, string> }> = [
      { form: { reason: 'x' }, headers: {} },
      { form: { reason: 'x', csrf: 'A'.repeat(43) }, headers: {} },
      { form: { reason: 'x', csrf: who.csrf }, headers: { origin: 'https://evil.example' } },
      { form: { reason: 'x', csrf: who.csrf }, headers: { 'sec-fetch-site': 'cross-site' } },
    ];
    for (const t of tries) {
      const r = await post(rig, '/ui/machine/inst-a/lock', who, t.form, t.headers);
      expect(r.statusCode).toBe(403);
      expect(r.body).toContain('ui_csrf_invalid');
    }
    expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(false);
    const refused = await rig.ctx.stores.fleet.audit({ action: 'ui_lock', outcome: 'refused', limit: 10 });
    expect(refused).toHaveLength(4);
    expect(refused[0]).toMatchObject({ code: 'ui_csrf_invalid', actor: 'ui:admin', instanceId: 'inst-a' });
  });

  it('a viewer sees the fleet but cannot lock (403, audited), even with its own valid CSRF token', async () => {
    const token = issueViewerToken(rig.dir, 'alice', Date.now());
    const viewer = await signIn(rig, token);
    const m = await rig.app.inject({ method: 'GET', url: '/ui/machine/inst-a', headers: { cookie: viewer.cookie } });
    expect(m.statusCode).toBe(200);
    expect(m.body).not.toContain('/lock"');
    const r = await post(rig, '/ui/machine/inst-a/lock', viewer, { csrf: viewer.csrf, reason: 'x' });
    expect(r.statusCode).toBe(403);
    expect(r.body).toContain('ui_role_forbidden');
    expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(false);
    const [row] = await rig.ctx.stores.fleet.audit({ action: 'ui_lock', actor: 'ui:alice', limit: 1 });
    expect(row).toMatchObject({ code: 'ui_role_forbidden', outcome: 'refused' });
  });

  it("revoking a viewer's token ends the sessions it opened at their next page; so does replacing it", async () => {
    const page = (who: { cookie: string }) =>
      rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie: who.cookie } });
    const alice = await signIn(rig, issueViewerToken(rig.dir, 'alice', Date.now()));
    const bob = await signIn(rig, issueViewerToken(rig.dir, 'bob', Date.now()));
    expect((await page(alice)).statusCode).toBe(200);
    expect(revokeViewerToken(rig.dir, 'alice')).toBe(true);
    const after = await page(alice);
    expect(after.statusCode).toBe(303);
    expect(after.headers.location).toContain('/ui/sign-in');
    expect((await page(bob)).statusCode).toBe(200);
    // A new token for the same name does not revive a session of the old one.
    const next = issueViewerToken(rig.dir, 'bob', Date.now());
    expect((await page(bob)).statusCode).toBe(303);
    expect((await page(await signIn(rig, next))).statusCode).toBe(200);
  });

  it('a new admin credential ends the admin sessions of the old one', async () => {
    const admin = await signIn(rig);
    const page = () => rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie: admin.cookie } });
    expect((await page()).statusCode).toBe(200);
    await rig.ctx.stores.admin.setAdminTokenHash(sha256Hex('a rotated admin credential'));
    try {
      expect((await page()).statusCode).toBe(303);
      const r = await post(rig, '/ui/machine/inst-a/lock', admin, { csrf: admin.csrf, reason: 'x' });
      expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(false);
      expect(r.statusCode).toBe(303);
    } finally {
      await rig.ctx.stores.admin.setAdminTokenHash(sha256Hex(rig.adminToken));
    }
  });

  it("one session's CSRF token does not work for another session", async () => {
    const a = await signIn(rig);
    const b = await signIn(rig);
    const r = await post(rig, '/ui/machine/inst-a/lock', a, { csrf: b.csrf, reason: 'x' });
    expect(r.statusCode).toBe(403);
  });

  it('expires an idle session: the next page goes to sign-in, a POST changes nothing', async () => {
    const who = await signIn(rig);
    rig.clock.offsetMs += 61_000;
    const g = await rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie: who.cookie } });
    expect(g.statusCode).toBe(303);
    expect(g.headers.location).toMatch(/^\/ui\/sign-in\?next=/);
    const p = await post(rig, '/ui/machine/inst-a/lock', who, { csrf: who.csrf, reason: 'x' });
    expect(p.statusCode).toBe(303);
    expect((await rig.ctx.stores.instances.get('inst-a'))!.locked).toBe(false);
  });

  it('sign-out ends the session (CSRF-checked) and clears the cookie', async () => {
    const who = await signIn(rig);
    expect((await post(rig, '/ui/sign-out', who, {})).statusCode).toBe(403);
    const r = await post(rig, '/ui/sign-out', who, { csrf: who.csrf });
    expect(r.statusCode).toBe(303);
    expect(String(r.headers['set-cookie'])).toContain('Max-Age=0');
    const g = await rig.app.inject({ method: 'GET', url: '/ui/', headers: { cookie: who.cookie } });
    expect(g.statusCode).toBe(303);
  });

  it('walks the audit chain in bounded steps and shows the result', async () => {
    const who = await signIn(rig);
    const r = await post(rig, '/ui/audit/verify', who, { csrf: who.csrf, from: 'start' });
    expect(r.statusCode).toBe(303);
    const page = await rig.app.inject({ method: 'GET', url: '/ui/audit', headers: { cookie: who.cookie } });
    expect(page.body).toContain('verified');
    expect(rig.ui.chain.last).toMatchObject({ complete: true });
    expect(rig.ui.chain.last!.brokenAt).toBeUndefined();
  });

  it('filters the audit page by actor and outcome', async () => {
    const who = await signIn(rig);
    const r = await rig.app.inject({
      method: 'GET',
      url: '/ui/audit?actor=ui%3Aalice&outcome=refused',
      headers: { cookie: who.cookie },
    });
    expect(r.statusCode).toBe(200);
    expect(r.body).toContain('ui_role_forbidden');
    expect(r.body).not.toContain('>ui_sign_in<');
  });
});
