/**
 * Rotating the SSH CAs, the JWT-SVID key and the admin credential (`sigil server rotate-key`)
 * against the real consumers: OpenSSH's sshd (TrustedUserCAKeys) and ssh (known_hosts
 * @cert-authority, StrictHostKeyChecking yes) with the agent's own ssh output files, and a jose
 * verifier with the issuer's /v1/jwks over HTTPS.
 *
 * The timeline, one data directory; the issuer reads each step while it runs (its key reloader,
 * src/server/key-reload.ts, as SIGHUP or the file watch do), but for the activation, which a
 * restart picks up:
 *   gen 1  old keys sign                    → ssh/jwt outputs "1"
 *   stage  (sigil server rotate-key --stage, the built CLI) → outputs "2": still signed by the old
 *          keys, but their trust files also list the staged CAs
 *   activate                                → outputs "3": signed by the new keys; trust files
 *          list the retired CAs beside them
 *   compromise (--overlap 0)                → outputs "4": the keys of gen 3 are trusted by nothing
 * What must hold: every credential of gens 2–3 works against every sshd of gens 2–3 in both
 * directions; gen 1 (taken before the stage) is the negative control — its client has never
 * heard of the new host CA; after the compromise the old user CA's certificates are refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, errors, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { KeyReloader } from '../../src/server/key-reload.js';
import { rotateKey } from '../../src/server/rotate-key.js';
import { silentLogger } from '../../src/util/log.js';
import { sigil } from '../helpers/cli.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { createTestUser, requireOpenSsh, ssh, startSshd, type Sshd } from '../helpers/sshd.js';
import { startIssuer, type Harness } from '../integration/harness.js';

const HOST = 'gw1.example.org';
const POLICY = (login: string) => `
kind: role
name: rot
spec:
  max_ttl: 1h
  allowed_outputs: [ssh_user, ssh_host, jwt]
  ssh_logins: ["{{internal.logins}}"]
  ssh_host_principals: [${HOST}]
  jwt_audiences: [vault]
---
kind: bot
name: rotbot
spec: { roles: [rot], traits: { logins: [${login}] } }
`;

interface Gen {
  h: Harness;
  agent: CredentialAgent;
  user: string;
  host: string;
  jwt: string;
  jwks: { keys: Array<{ kid: string }> };
  /** The kid the issuer signed JWT-SVIDs with at this generation. */
  signingKid: string;
}

let dir: string;
let user: { name: string; remove(): void };
const gens: Record<number, Gen> = {};
const sshds = new Map<number, Sshd>();
let live: Harness | undefined;

/**
 * Take a generation of outputs from the issuer on the data directory: after a restart, or from the
 * running one once its key reloader has read the step ('reload').
 */
async function generation(n: number, how: 'start' | 'reload' = 'start'): Promise<Gen> {
  let h: Harness;
  if (how === 'reload') {
    h = live!;
    const r = new KeyReloader({
      dataDir: dir,
      trustDomain: 'example.org',
      target: h.ctx,
      log: silentLogger(),
      now: Date.now,
    }).reload();
    expect(r.result).toBe('applied');
  } else {
    if (live) await live.close({ keepDir: true });
    h = await startIssuer(dir ? { dir } : {});
    live = h;
    dir = h.dir;
  }
  await runAdminOp(h.ctx.stores, 'apply', { yaml: POLICY(user.name) });
  const agent = await credentialAgent(h, { bot: 'rotbot' });
  const g = { user: join(agent.dir, `ssh${n}`), host: join(agent.dir, `host${n}`), jwt: join(agent.dir, `jwt${n}`) };
  const outcomes = await agent
    .outputs([
      { type: 'ssh_user', path: g.user, ttl: '30m' },
      { type: 'ssh_host', path: g.host },
      { type: 'jwt', path: g.jwt, audiences: ['vault'], ttl: '30m' },
    ])
    .refresh();
  expect(outcomes.map((o) => o.action)).toEqual(['issued', 'issued', 'issued']);
  const res = await h.request('GET', '/v1/jwks');
  expect(res.status).toBe(200);
  return (gens[n] = { h, agent, ...g, jwks: res.json as Gen['jwks'], signingKid: h.ctx.credentials.jwt.kid });
}

/** sshd with generation `n`'s ssh_host output (host key, certificate, TrustedUserCAKeys), started once. */
async function sshdOf(n: number): Promise<Sshd> {
  const g = gens[n]!;
  let s = sshds.get(n);
  if (!s) {
    s = await startSshd(g.agent.dir, {
      hostKey: join(g.host, 'ssh_host'),
      hostCert: join(g.host, 'ssh_host-cert.pub'),
      trustedUserCaKeys: join(g.host, 'ssh_user_ca.pub'),
    });
    sshds.set(n, s);
  }
  return s;
}

/** ssh with generation `n`'s ssh_user output (its ssh_config, known_hosts and certificate) to `sshd`. */
const login = (n: number, sshd: Sshd) =>
  ssh([
    '-F',
    join(gens[n]!.user, 'ssh_config'),
    '-o',
    `Port=${sshd.port}`,
    '-o',
    'HostName=127.0.0.1',
    '-o',
    `HostKeyAlias=${HOST}`,
    '-o',
    'BatchMode=yes',
    '-l',
    user.name,
    HOST,
    'echo',
    'in',
  ]);

const lines = (file: string) => readFileSync(file, 'utf8').trim().split('\n');
const token = (n: number) => readFileSync(join(gens[n]!.jwt, 'token'), 'utf8');
const verifyWith = (jwks: Gen['jwks'], n: number) =>
  jwtVerify(token(n), createLocalJWKSet(jwks as never), { audience: 'vault', algorithms: ['ES256'] });

beforeAll(async () => {
  requireOpenSsh();
  user = createTestUser();
  await generation(1);
  // The first step through the built CLI, as an operator runs it (the issuer keeps running).
  for (const key of ['ssh-user', 'ssh-host', 'jwt']) {
    const r = await sigil(['server', 'rotate-key', '--data-dir', dir, '--key', key, '--stage', '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ key, step: 'stage', reload_within_s: 10, shared_store: false });
  }
  await generation(2, 'reload');
  for (const key of ['ssh-user', 'ssh-host', 'jwt']) await rotateKey({ dataDir: dir, key });
  await generation(3);
  for (const key of ['ssh-user', 'jwt']) await rotateKey({ dataDir: dir, key, overlapS: 0 });
  // The compromise on the running issuer: the stolen keys stop signing without a restart.
  await generation(4, 'reload');
}, 120_000);

afterAll(async () => {
  for (const s of sshds.values()) await s.stop();
  for (const g of Object.values(gens)) g.agent.close();
  await live?.close();
  user?.remove();
});

describe('SSH CAs: staged, activated, retired — against sshd and ssh', () => {
  it('the trust files of each generation list exactly the CAs of the rotation in progress', () => {
    expect(lines(join(gens[1]!.host, 'ssh_user_ca.pub'))).toHaveLength(1);
    expect(lines(join(gens[2]!.host, 'ssh_user_ca.pub')).map((l) => l.split(' ')[2])).toEqual([
      'sigil-user-ca@example.org',
      'next-sigil-user-ca@example.org',
    ]);
    expect(lines(join(gens[3]!.user, 'known_hosts')).map((l) => l.split(' ').at(-1))).toEqual([
      'sigil-host-ca@example.org',
      'retired-sigil-host-ca@example.org',
    ]);
    // The staged CA of gen 2 is the signing CA of gen 3; gen 2's signing CA is gen 3's retired one.
    const key = (l: string) => l.split(' ').slice(-3, -1).join(' ');
    const hostCas2 = lines(join(gens[2]!.user, 'known_hosts')).map(key);
    const hostCas3 = lines(join(gens[3]!.user, 'known_hosts')).map(key);
    expect(hostCas3).toEqual([hostCas2[1], hostCas2[0]]);
    // The compromise rotation publishes the fresh CA alone: neither gen 3's nor the one retired
    // at the activation (a backup older than that activation holds its private half).
    expect(lines(join(gens[4]!.host, 'ssh_user_ca.pub'))).toHaveLength(1);
  });

  it('a client and a host certified on either side of the activation accept each other', async () => {
    const sshd2 = await sshdOf(2); // old host CA; trusts the old and the staged user CA
    const sshd3 = await sshdOf(3); // new host CA; trusts the new and the retired user CA
    for (const [n, s] of [
      [3, sshd2], // new user cert → host trusting the staged CA; client trusting the retired host CA
      [2, sshd3], // old user cert → host trusting the retired CA; client trusting the staged host CA
      [2, sshd2],
      [3, sshd3],
    ] as const) {
      const r = await login(n, s);
      expect([n, r.code, r.stderr]).toEqual([n, 0, expect.any(String)]);
      expect(r.stdout.trim()).toBe('in');
    }
  });

  it('control: a client configured before the stage has never heard of the new host CA (what staging is for)', async () => {
    const r = await login(1, await sshdOf(3));
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Host key verification failed/);
  });

  it('after a compromise rotation (overlap 0), a certificate of the old user CA is refused by sshd', async () => {
    const sshd4 = await sshdOf(4); // trusts only the user CA made at the compromise rotation
    for (const n of [3, 2]) {
      // gen 3: the CA replaced by the compromise rotation; gen 2: the one retired before it.
      const r = await login(n, sshd4);
      expect([n, r.code]).toEqual([n, 255]);
      expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
    }
    // Gen 4's host CA was not rotated: its client still gets in with its own certificate.
    const ok = await login(4, sshd4);
    expect([ok.code, ok.stdout.trim()]).toEqual([0, 'in']);
  });
});

describe('JWT-SVID key: staged, activated, retired — against a jose verifier with the served JWKS', () => {
  it('the JWKS publishes the staged key before it signs, then the retired one beside the new', async () => {
    const kids = (n: number) => gens[n]!.jwks.keys.map((k) => k.kid);
    expect(kids(1)).toHaveLength(1);
    expect(kids(2)).toEqual([kids(1)[0], expect.any(String)]);
    expect(kids(3)).toEqual([kids(2)[1], kids(1)[0]]);
    expect(gens[3]!.signingKid).toBe(kids(2)[1]);
    expect(gens[4]!.signingKid).toBe(kids(4)[0]);
    expect(kids(4)).toHaveLength(1);
    expect([kids(1)[0], kids(3)[0]]).not.toContain(kids(4)[0]);
  });

  it('a token signed before the activation verifies against the new JWKS; the new one carries the new kid', async () => {
    const old = await verifyWith(gens[3]!.jwks, 1);
    const fresh = await verifyWith(gens[3]!.jwks, 3);
    expect(old.protectedHeader.kid).not.toBe(fresh.protectedHeader.kid);
    expect(fresh.protectedHeader.kid).toBe(gens[3]!.jwks.keys[0]!.kid);
    // A verifier that fetched the JWKS while the key was only staged already accepts the new token.
    await expect(verifyWith(gens[2]!.jwks, 3)).resolves.toBeDefined();
  });

  it('after a compromise rotation (overlap 0), tokens of the old key no longer verify', async () => {
    await expect(verifyWith(gens[4]!.jwks, 3)).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
    await expect(verifyWith(gens[4]!.jwks, 4)).resolves.toBeDefined();
  });

  it('the SPIFFE bundle carries the same keys and a sequence that moved', async () => {
    const res = await live!.request('GET', '/v1/bundle/spiffe');
    const b = res.json as { keys: Array<{ use: string; kid?: string }>; spiffe_sequence: number };
    expect(b.keys.filter((k) => k.use === 'jwt-svid').map((k) => k.kid)).toEqual(gens[4]!.jwks.keys.map((k) => k.kid));
    expect(b.spiffe_sequence * 1000).toBeGreaterThan(Date.now() - 120_000);
  });
});

describe('the admin credential', () => {
  it('rotated while the issuer runs: the old token is refused at once, the new one works', async () => {
    const h = live!;
    const old = h.adminToken;
    const call = (t: string) =>
      h.request('POST', '/v1/admin/bots.ls', {
        body: '{}',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
      });
    expect((await call(old)).status).toBe(200);
    await rotateKey({ dataDir: dir, key: 'admin-token' });
    const fresh = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    expect((await call(old)).status).toBe(401);
    expect((await call(fresh)).status).toBe(200);
  });
});
