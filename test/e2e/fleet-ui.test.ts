/**
 * The fleet view (issue #18) in a real browser: Debian's chromium driven by playwright-core
 * against a real `sigil server start` process, with real token agents joined and renewing.
 * One instance's attestation failure is written straight into the store (the agents here join
 * with tokens; the record's shape is the one continuous attestation writes, issue #16), and a
 * few hundred seeded instances (bench/lib/seed-fleet.ts) make the pages look like a fleet.
 *
 * Attacks tested through the browser: CSRF (missing/wrong token, a cross-site form), a viewer
 * trying to lock, XSS through a bot name (escaped; and the CSP blocks an injected inline script),
 * clickjacking (frame-ancestors), session expiry. Screenshots: test-artifacts/ui/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedFleet } from '../../bench/lib/seed-fleet.js';
import { readAuditKey } from '../../src/server/audit/audit-key.js';
import { openIssuerStores, paths, readAdminToken } from '../../src/server/data-dir.js';
import {
  applyResources,
  createToken,
  ROOT,
  sigil,
  SIGIL,
  sigilJson,
  tempDir,
  writeAgentConfig,
  type RunningIssuer,
} from '../helpers/cli.js';

// page.evaluate callbacks run in chromium; the program is type-checked without the DOM library
// (it would change Node's Crypto and BufferSource types for every other file).
declare const document: any, window: any;

const SHOTS = join(ROOT, 'test-artifacts', 'ui');
const XSS_BOT = '<script>window.__xss=1;console.log("xss-ran")</script>';
const FAILED_ATTESTATION = {
  ok: false,
  via: 'attest',
  profile: 'fw-2025-03',
  check: 'pcr_mismatch',
  message: 'PCR 7 (Secure Boot policy) does not match any value the firmware profile allows',
  diff: [
    {
      bank: 'sha256',
      pcr: 7,
      expected: ['3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969'],
      got: 'b5710bf57d25623e4019027da116821fa99f5c81e9e38b87671cc574f9281439',
    },
    {
      bank: 'sha256',
      pcr: 4,
      expected: [
        'a0f6c8b1e7d2a7c0b3f0e4c2d1a9b8e7f6c5d4b3a2918f7e6d5c4b3a29180f7e',
        '0f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0',
      ],
      got: '1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d',
    },
  ],
  reset_count: 12,
  restart_count: 0,
  rebooted: true,
};

interface UiIssuer {
  url: string;
  uiUrl: string;
  dataDir: string;
  pin: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** `sigil server init` + `start` with fleet-view flags; waits for both URLs. */
async function startUiIssuer(
  dir: string,
  extra: string[],
  prepare?: (dataDir: string) => Promise<void>,
): Promise<UiIssuer> {
  const dataDir = join(dir, 'issuer');
  const init = await sigilJson<{ ca_pin: string }>([
    'server',
    'init',
    '--data-dir',
    dataDir,
    '--trust-domain',
    'example.org',
  ]);
  await applyResources({ dataDir } as RunningIssuer, dir);
  if (prepare) await prepare(dataDir);
  const proc = spawn(
    process.execPath,
    [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...extra],
    {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const { url, uiUrl } = await new Promise<{ url: string; uiUrl: string }>((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`issuer did not start: ${err}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const a = /listening on (https:\/\/\S+)/.exec(out);
      const b = /fleet view on (https:\/\/\S+)\/ui\//.exec(out);
      if (a && b) {
        clearTimeout(t);
        res({ url: a[1]!, uiUrl: b[1]! });
      }
    });
    proc.on('exit', (code) => rej(new Error(`issuer exited ${code}: ${err}`)));
  });
  return {
    url,
    uiUrl,
    dataDir,
    pin: init.ca_pin,
    proc,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

async function launch(profile: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1440, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/ui/sign-in`);
  if (!page.url().includes('/ui/sign-in')) return; // this browser profile is signed in already
  await page.fill('input[name="token"]', token);
  await Promise.all([page.waitForURL(`${base}/ui/`), page.click('button[type="submit"]')]);
}

/**
 * A form the page itself submits (a real browser POST: its cookies, Origin and Fetch Metadata).
 * fetch() from the page is no way to send one: the CSP's default-src 'none' blocks connect-src.
 */
async function submitForm(
  page: Page,
  action: string,
  fields: Record<string, string>,
): Promise<{ status: number; text: string }> {
  const response = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === action);
  await page.evaluate(
    ([a, f]) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = a as string;
      for (const [k, v] of Object.entries(f as Record<string, string>)) {
        const input = document.createElement('input');
        input.type = 'hidden';
        input.name = k;
        input.value = v;
        form.append(input);
      }
      document.body.append(form);
      form.submit();
    },
    [action, fields] as const,
  );
  const r = await response;
  await page.waitForLoadState();
  return { status: r.status(), text: await r.text() };
}

/** Long pages (the fleet table, the audit log) are shot as the first screen only, to stay readable. */
const shot = (page: Page, name: string, fullPage = true) =>
  page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });

describe('fleet view in chromium', () => {
  const tmp = tempDir('sigil-fleet-ui-');
  let issuer: UiIssuer;
  let browser: BrowserContext;
  let adminToken: string;
  let badId: string;
  let badAgent: ReturnType<typeof writeAgentConfig>;
  let goodId: string;
  const consoleLines: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    issuer = await startUiIssuer(tmp.path, [], async (dataDir) => {
      // A fleet to look at: seeded straight into issuer.db, chained with the issuer's audit key.
      const key = readAuditKey(paths(dataDir).auditKey);
      await seedFleet(
        { sqlite: paths(dataDir).db },
        { instances: 400, bots: 6, ...(key ? { auditKey: { secret: key.secret, fromSeq: key.fromSeq } } : {}) },
      );
    });
    adminToken = readAdminToken(issuer.dataDir);
    // Real agents: two token joins.
    const joined: string[] = [];
    const agents = [];
    for (const name of ['edge-a', 'edge-b']) {
      const token = await createToken({ dataDir: issuer.dataDir } as RunningIssuer);
      const a = writeAgentConfig(tmp.path, name, { url: issuer.url, pin: issuer.pin, token });
      const r = await sigilJson<{ spiffe_id: string }>(['agent', 'run', '--config', a.config, '--once']);
      joined.push(r.spiffe_id.split('/').pop()!);
      agents.push(a);
    }
    [badId, goodId] = joined as [string, string];
    badAgent = agents[0]!;
    // The failed attestation and a hostile bot name, written through the store (SQLite is shared
    // with the running issuer: WAL, one writer at a time).
    const stores = openIssuerStores(issuer.dataDir);
    try {
      await stores.instances.updateFacts(
        badId,
        { firmware_profile: 'fw-2025-03', attestation: { ...FAILED_ATTESTATION, at: Date.now() } },
        Date.now(),
      );
      // The audit row continuous attestation writes for a refused quote (its history table).
      await stores.audit.append(
        {
          action: 'attest',
          outcome: 'refused',
          code: 'pcr_mismatch',
          bot: 'gw',
          instanceId: badId,
          method: 'token',
          actor: 'agent',
          remote: '127.0.0.1',
          details: { attestation: { ...FAILED_ATTESTATION, at: Date.now() } },
        },
        Date.now(),
      );
      await stores.instances.create({
        id: 'xss-instance',
        bot: XSS_BOT,
        joinMethod: 'token',
        spiffeId: 'spiffe://example.org/bot/x/xss-instance',
        generation: 1,
        facts: { note: '"><img src=x onerror="window.__xss=2">' },
        keyStorage: 'software',
        exportable: true,
        createdAt: Date.now(),
      });
    } finally {
      await stores.close();
    }
    browser = await launch(join(tmp.path, 'chromium-admin'));
    browser.on('console', (m) => consoleLines.push(m.text()));
  });

  afterAll(async () => {
    await browser?.close();
    await issuer?.stop();
    tmp.cleanup();
  });

  it('sign in, filter to failed attestation, open the machine, see the PCR diff, lock it, the agent is refused, sign out', async () => {
    const page = await browser.newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${issuer.url}/ui/`);
    expect(page.url()).toContain('/ui/sign-in?next=');
    await shot(page, 'sign-in');
    await signIn(page, issuer.url, adminToken);
    await expect.poll(() => page.locator('.tile-total .tile-n').textContent()).toBe('403');
    await shot(page, 'fleet', false);

    await page.selectOption('select[name="state"]', 'attestation_failed');
    await page.waitForURL(/state=attestation_failed/);
    const link = page.locator(`a[href="/ui/machine/${badId}"]`);
    await expect.poll(() => link.count()).toBe(1);
    expect(await page.locator(`a[href="/ui/machine/${goodId}"]`).count()).toBe(0);
    await shot(page, 'fleet-attestation-failed', false);

    await Promise.all([page.waitForURL(`**/ui/machine/${badId}`), link.click()]);
    const diff = page.locator('table.diff');
    expect(await diff.locator('tbody tr').count()).toBe(2);
    expect(await diff.textContent()).toContain(FAILED_ATTESTATION.diff[0]!.got);
    expect(await diff.textContent()).toContain(FAILED_ATTESTATION.diff[0]!.expected[0]!);
    expect(await page.locator('.failed-check').textContent()).toContain('pcr_mismatch');
    expect(await page.locator('section.attest-history tbody tr').count()).toBe(1);
    expect(await page.locator('section.attest-history tbody').textContent()).toContain('sha256:7, sha256:4');
    await shot(page, 'machine-attestation-failed');

    await page.fill('form.lock input[name="reason"]', 'PCR 7 changed: Secure Boot policy tampered?');
    await Promise.all([page.waitForURL(/done=locked/), page.click('form.lock button')]);
    expect(await page.locator('.notice').textContent()).toContain('locked');
    await shot(page, 'machine-locked');

    // The agent's next renewal is refused: the lock is in force at the issuer.
    const renew = await sigil(['agent', 'renew', '--config', badAgent.config]);
    expect(renew.code).toBe(1);
    expect(renew.stderr).toMatch(/error\[instance_locked\]/);

    // The audit page shows the lock, attributed to the UI session.
    await page.goto(`${issuer.url}/ui/audit?action=lock&actor=ui%3Aadmin`);
    expect(await page.locator('table.audit tbody tr').count()).toBe(1);
    expect(await page.locator('table.audit tbody').textContent()).toContain(badId);
    await Promise.all([page.waitForURL(/\/ui\/audit$/), page.click('button[value="start"]')]);
    expect(await page.locator('section.chain .badge').first().textContent()).toBe('verified');
    await shot(page, 'audit', false);

    await Promise.all([page.waitForURL(/\/ui\/sign-in$/), page.click('form.signout button')]);
    await page.goto(`${issuer.url}/ui/`);
    expect(page.url()).toContain('/ui/sign-in?next=');
    await page.close();
  });

  it('CSRF: a POST without or with a wrong token is refused 403 and changes nothing; a cross-site form arrives without the cookie', async () => {
    const page = await browser.newPage();
    await signIn(page, issuer.url, adminToken);
    const action = `/ui/machine/${goodId}/lock`;
    await page.goto(`${issuer.url}/ui/machine/${goodId}`);
    const missing = await submitForm(page, action, { reason: 'csrf-test' });
    expect(missing.status).toBe(403);
    expect(missing.text).toContain('ui_csrf_invalid');
    await shot(page, 'csrf-refused');
    await page.goto(`${issuer.url}/ui/machine/${goodId}`);
    const wrong = await submitForm(page, action, { reason: 'csrf-test', csrf: 'A'.repeat(43) });
    expect(wrong.status).toBe(403);

    // Another origin's page posting a form (even with the right token) to the issuer: SameSite=Strict
    // keeps the session cookie off it, so it lands on the sign-in page.
    await page.goto(`${issuer.url}/ui/`);
    const csrf = await page.locator('form.signout input[name="csrf"]').inputValue();
    const attacker = await browser.newPage();
    await attacker.setContent(
      `<form method="post" action="${issuer.url}/ui/machine/${goodId}/lock"><input name="csrf" value="${csrf}"><input name="reason" value="cross-site"><button>go</button></form>`,
    );
    await Promise.all([attacker.waitForURL(/\/ui\/sign-in/), attacker.click('button')]);
    await attacker.close();

    const stores = openIssuerStores(issuer.dataDir);
    try {
      expect((await stores.instances.get(goodId))!.locked).toBe(false);
      const refused = await stores.fleet.audit({ action: 'ui_lock', outcome: 'refused', limit: 10 });
      expect(refused.map((r) => r.code)).toEqual(['ui_csrf_invalid', 'ui_csrf_invalid']);
    } finally {
      await stores.close();
    }
    await page.close();
  });

  it('XSS: a bot named <script> renders as text, and the CSP blocks an injected inline script', async () => {
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/.test(m.text())) violations.push(m.text());
    });
    await signIn(page, issuer.url, adminToken);
    await page.goto(`${issuer.url}/ui/?q=xss-instance`);
    const cell = page.locator('table.fleet tbody tr td').nth(1);
    expect(await cell.textContent()).toBe(XSS_BOT);
    await page.goto(`${issuer.url}/ui/machine/xss-instance`);
    expect(await page.locator('dl.facts').textContent()).toContain('onerror=');
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(consoleLines).not.toContain('xss-ran');
    await shot(page, 'machine-xss');
    // Suppose escaping failed somewhere: an inline script in the DOM still does not run.
    await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__xss = 3';
      document.body.append(s);
    });
    await expect.poll(() => violations.length).toBeGreaterThan(0);
    expect(violations[0]).toMatch(/script-src 'self'/);
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    await page.close();
  });

  it('clickjacking: another page cannot frame the view (frame-ancestors)', async () => {
    const page = await browser.newPage();
    const refused: string[] = [];
    page.on('console', (m) => {
      if (/frame-ancestors/.test(m.text())) refused.push(m.text());
    });
    await page.setContent(`<iframe src="${issuer.url}/ui/sign-in" width="600" height="400"></iframe>`);
    await expect.poll(() => refused.length).toBeGreaterThan(0);
    const frame = page.frames()[1]!;
    expect(await frame.locator('input[name="token"]').count()).toBe(0);
    await page.close();
  });

  it('a viewer sees the fleet but cannot lock: 403, nothing changed', async () => {
    const issued = await sigilJson<{ token: string }>([
      'server',
      'ui-token',
      '--data-dir',
      issuer.dataDir,
      '--name',
      'noc',
    ]);
    const ctx = await launch(join(tmp.path, 'chromium-viewer'));
    try {
      const page = await ctx.newPage();
      await signIn(page, issuer.url, issued.token);
      expect(await page.locator('.role').textContent()).toBe('viewer');
      await page.goto(`${issuer.url}/ui/machine/${goodId}`);
      expect(await page.locator('form.lock').count()).toBe(0);
      await shot(page, 'machine-viewer');
      const csrf = await page.locator('form.signout input[name="csrf"]').inputValue();
      const r = await submitForm(page, `/ui/machine/${goodId}/lock`, { csrf, reason: 'viewer-escalation' });
      expect(r.status).toBe(403);
      expect(r.text).toContain('ui_role_forbidden');
    } finally {
      await ctx.close();
    }
    const stores = openIssuerStores(issuer.dataDir);
    try {
      expect((await stores.instances.get(goodId))!.locked).toBe(false);
    } finally {
      await stores.close();
    }
  });

  it('session expiry (idle timeout) sends the browser back to sign-in; --ui-listen serves the view on its own port', async () => {
    const dir = join(tmp.path, 'short');
    mkdirSync(dir);
    const short = await startUiIssuer(dir, ['--ui-idle-timeout', '2s', '--ui-listen', '127.0.0.1:0']);
    const ctx = await launch(join(tmp.path, 'chromium-short'));
    try {
      expect(short.uiUrl).not.toBe(short.url);
      const page = await ctx.newPage();
      await signIn(page, short.uiUrl, readAdminToken(short.dataDir));
      // Not on the protocol listener.
      const onMain = await page.goto(`${short.url}/ui/`);
      expect(onMain!.status()).toBe(404);
      // Idle past the timeout (the only way to test a wall-clock timeout end to end; the
      // injected-clock unit test covers the edges).
      await new Promise((r) => setTimeout(r, 2500));
      await page.goto(`${short.uiUrl}/ui/audit`);
      expect(page.url()).toBe(`${short.uiUrl}/ui/sign-in?next=%2Fui%2Faudit`);
    } finally {
      await ctx.close();
      await short.stop();
    }
  });
});
