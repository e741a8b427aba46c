/**
 * rotate-key steps reach a running issuer without a restart (src/server/key-reload.ts):
 *
 * - the built CLI's `sigil server start` as its own process: a stage read at once on SIGHUP, an
 *   activation read by the file watch alone (no signal), a compromise on SIGHUP — each seen in the
 *   /v1/jwks a verifier fetches over HTTPS, the process never restarted;
 * - a peer issuer (the in-process harness, real HTTPS, a real agent's credential outputs) that got
 *   a compromise rotation's list before its key file: JWT-SVID requests are refused with
 *   signing_key_withdrawn (503) — credentials and workload JWT-SVIDs alike — while SSH credentials still issue; once the key file is copied the
 *   JWT-SVID is signed by the new key.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCredentialRequest } from '../../src/agent/credential-request.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { credentialKeyPaths } from '../../src/server/credential-keys.js';
import { paths } from '../../src/server/data-dir.js';
import { KeyReloader } from '../../src/server/key-reload.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { rotatingKeysPath } from '../../src/server/rotating-keys.js';
import { silentLogger } from '../../src/util/log.js';
import { SIGIL, sigil, startIssuer as startIssuerProcess, tempDir } from '../helpers/cli.js';
import { credentialAgent } from '../helpers/credential-agent.js';
import { expectRefusal, startIssuer } from '../integration/harness.js';
import { applyWorkloadPolicy, workloadEnvelope } from '../integration/workload-issuer-rig.js';

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function getJson(url: string, ca: string): Promise<{ keys: Array<{ kid: string }> }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, checkServerIdentity: () => undefined, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

/** The JWKS's kids once `ok` holds, polling every 200 ms for at most `ms`. */
async function kidsWhen(url: string, ca: string, ok: (kids: string[]) => boolean, ms: number): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    const kids = (await getJson(`${url}/v1/jwks`, ca)).keys.map((k) => k.kid);
    if (ok(kids) || Date.now() > until) return kids;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('sigil server start picks rotate-key steps up while it runs', () => {
  it('stage on SIGHUP, activation by the file watch, compromise on SIGHUP — one process throughout', async () => {
    const t = tempDir('sigil-reload-e2e-');
    cleanups.push(t.cleanup);
    const issuer = await startIssuerProcess(t.path);
    cleanups.push(() => issuer.stop());
    const ca = readFileSync(paths(issuer.dataDir).rootCert, 'utf8');
    const pid = issuer.proc.pid;
    const [k1] = (await getJson(`${issuer.url}/v1/jwks`, ca)).keys.map((k) => k.kid);

    const rotate = async (...args: string[]) => {
      const r = await sigil(['server', 'rotate-key', '--data-dir', issuer.dataDir, '--key', 'jwt', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    expect(await rotate('--stage')).toMatch(/pick it up within 10 s, or at once with: systemctl reload sigil-server/);
    issuer.proc.kill('SIGHUP');
    const staged = await kidsWhen(issuer.url, ca, (k) => k.length === 2, 3000);
    expect(staged[0]).toBe(k1);
    const k2 = staged[1]!;

    await rotate(); // no signal: the watch reads it within two polls (5 s each)
    const t0 = Date.now();
    expect(await kidsWhen(issuer.url, ca, (k) => k[0] === k2, 20_000)).toEqual([k2, k1]);
    expect(Date.now() - t0).toBeLessThan(15_000);

    await rotate('--overlap', '0');
    issuer.proc.kill('SIGHUP');
    const after = await kidsWhen(issuer.url, ca, (k) => k.length === 1, 3000);
    expect(after).toHaveLength(1);
    expect([k1, k2]).not.toContain(after[0]);
    expect(issuer.proc.pid).toBe(pid);
    expect(issuer.proc.exitCode).toBeNull();
    expect(issuer.log()).toMatch(/reloaded the credential keys: jwt signs with kid/);
  }, 60_000);
});

describe('SIGHUP while the issuer is still starting', () => {
  it('does not end the process (SIGHUP’s default action; systemd would not restart it): it starts and serves', async () => {
    const t = tempDir('sigil-reload-early-');
    cleanups.push(t.cleanup);
    const dataDir = join(t.path, 'issuer');
    expect((await sigil(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org'])).code).toBe(0);
    const p = spawn(process.execPath, [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => p.exitCode === null && p.kill('SIGKILL'));
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Early: the CLI runs, the issuer is not up yet (a start takes about a second).
    await new Promise((r) => setTimeout(r, 300));
    p.kill('SIGHUP');
    const until = Date.now() + 20_000;
    while (!/listening on/.test(out) && p.exitCode === null && Date.now() < until)
      await new Promise((r) => setTimeout(r, 50));
    expect([p.exitCode, p.signalCode]).toEqual([null, null]);
    expect(out).toMatch(/listening on https:/);
    p.kill('SIGHUP'); // and once it is up
    await new Promise((r) => setTimeout(r, 300));
    expect([p.exitCode, p.signalCode]).toEqual([null, null]);
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }, 40_000);
});

describe('a peer issuer that got a compromise rotation’s list before its key file', () => {
  it('refuses JWT-SVIDs (signing_key_withdrawn) and still issues SSH credentials, until the key file arrives', async () => {
    const h = await startIssuer();
    cleanups.push(() => h.close());
    await runAdminOp(h.ctx.stores, 'apply', {
      yaml: `
kind: role
name: r
spec: { max_ttl: 1h, allowed_outputs: [ssh_host, jwt], ssh_host_principals: [gw.example.org], jwt_audiences: [vault] }
---
kind: bot
name: b
spec: { roles: [r] }
`,
    });
    // The issuer where the rotation runs: a copy of this data directory, as add-issuer makes one.
    const other = join(mkdtempSync(join(tmpdir(), 'sigil-reload-peer-')), 'issuer');
    cleanups.push(() => rmSync(join(other, '..'), { recursive: true, force: true }));
    cpSync(h.dir, other, { recursive: true });
    await rotateKey({ dataDir: other, key: 'jwt', overlapS: 0 });

    // A credential answered before the halt: its stored answer carries the JWT signed by the key
    // about to be withdrawn, and must not be handed out again once it is.
    const gw0 = await h.join({ token: await h.token({ bot: 'b' }) });
    const before = await buildCredentialRequest({
      current: gw0.signer,
      chainPem: gw0.chainPem,
      now: h.ctx.now(),
      fields: { kind: 'jwt', audiences: ['vault'] },
    });
    expect((await h.post('credential', before.envelope)).status).toBe(200);
    await applyWorkloadPolicy(h);
    const gw = await h.join({ token: await h.token() });
    const wlBefore = await workloadEnvelope(gw, { action: 'jwt', entry: 'web', audience: ['vault'] }, h.ctx.now());
    expect((await h.post('workload', wlBefore.envelope)).status).toBe(200);

    const reloader = new KeyReloader({
      dataDir: h.dir,
      trustDomain: 'example.org',
      target: h.ctx,
      log: silentLogger(),
      now: Date.now,
    });
    const stolen = h.ctx.credentials.jwt.kid;
    cpSync(rotatingKeysPath(other), rotatingKeysPath(h.dir));
    expect(reloader.reload()).toMatchObject({ result: 'applied', halted: ['jwt'] });

    const agent = await credentialAgent(h, { bot: 'b' });
    cleanups.push(() => agent.close());
    const outs = agent.outputs([
      { type: 'jwt', path: join(agent.dir, 'jwt'), audiences: ['vault'], ttl: '10m' },
      { type: 'ssh_host', path: join(agent.dir, 'host') },
    ]);
    const [jwt, ssh] = await outs.refresh();
    expect(jwt!.action).toBe('failed');
    expect(jwt!.action === 'failed' && [jwt!.error.code, jwt!.error.message]).toEqual([
      'signing_key_withdrawn',
      expect.stringMatching(/jwt signing key was withdrawn by a compromise rotation/),
    ]);
    expect(ssh!.action).toBe('issued');
    // The same request again (an agent resending after a lost answer): refused, not replayed.
    expectRefusal(await h.post('credential', before.envelope), 503, 'signing_key_withdrawn');
    const served = await h.request('GET', '/v1/jwks');
    expect([served.json, served.headers['cache-control']]).toEqual([{ keys: [] }, 'no-store']);
    // Not ready (a load balancer sends agents elsewhere); alive.
    expectRefusal(await h.request('GET', '/readyz'), 503, 'signing_key_withdrawn');
    expect((await h.request('GET', '/healthz')).status).toBe(200);
    // A workload's JWT-SVID (the Workload API's path) is refused the same way, a resent one too.
    const fresh = await workloadEnvelope(gw, { action: 'jwt', entry: 'web', audience: ['vault'] }, h.ctx.now());
    expectRefusal(await h.post('workload', fresh.envelope), 503, 'signing_key_withdrawn');
    expectRefusal(await h.post('workload', wlBefore.envelope), 503, 'signing_key_withdrawn');

    cpSync(credentialKeyPaths(other).jwtSigning, credentialKeyPaths(h.dir).jwtSigning);
    expect(reloader.reload()).toMatchObject({ result: 'applied', halted: [] });
    expect((await h.request('GET', '/readyz')).status).toBe(200);
    // Signing again with the new key, it still never hands out an answer the stolen key signed:
    // the requests answered before the compromise, resent, are refused (the agent asks anew).
    expectRefusal(await h.post('credential', before.envelope), 503, 'signing_key_withdrawn');
    expectRefusal(await h.post('workload', wlBefore.envelope), 503, 'signing_key_withdrawn');
    expect((await h.request('GET', '/v1/jwks')).headers['cache-control']).toMatch(/^public, max-age=\d+$/);
    const [again] = await outs.refresh({ force: true }); // past its retry backoff
    expect(again!.action).toBe('issued');
    const kid = decodeProtectedHeader(readFileSync(join(agent.dir, 'jwt', 'token'), 'utf8')).kid;
    expect(kid).toBe(h.ctx.credentials.jwt.kid);
    expect(kid).not.toBe(stolen);
  }, 60_000);
});
