/**
 * SSH outputs against the real OpenSSH: sshd started by the test with the Sigil host key and
 * certificate (ssh_host output) and TrustedUserCAKeys = Sigil's user CA; ssh with the ssh_user
 * output's ssh_config logs in with the Sigil user certificate and verifies the host through the
 * @cert-authority line with StrictHostKeyChecking yes. Refusals come from the real consumer.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { parseCertificateLine } from '../../src/ssh/certificate.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { createTestUser, requireOpenSsh, ssh, startSshd, type Sshd } from '../helpers/sshd.js';
import { startIssuer, type Harness } from '../integration/harness.js';

let h: Harness;
let agent: CredentialAgent;
let sshd: Sshd;
let user: { name: string; remove(): void };
let hostDir: string;
let userDir: string;

const HOST = 'gw1.example.org';

beforeAll(async () => {
  requireOpenSsh();
  user = createTestUser();
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: `
kind: role
name: ssh-ops
spec:
  max_ttl: 1h
  allowed_outputs: [ssh_user, ssh_host]
  ssh_logins: ["{{internal.logins}}"]
  ssh_host_principals: [${HOST}, localhost]
---
kind: bot
name: sshbot
spec: { roles: [ssh-ops], traits: { logins: [${user.name}] } }
`,
  });
  agent = await credentialAgent(h, { bot: 'sshbot' });
  hostDir = join(agent.dir, 'host');
  userDir = join(agent.dir, 'ssh');
  const outcomes = await agent
    .outputs([
      { type: 'ssh_host', path: hostDir },
      { type: 'ssh_user', path: userDir, ttl: '30m' },
    ])
    .refresh();
  expect(outcomes.map((o) => [o.type, o.action])).toEqual([
    ['ssh_host', 'issued'],
    ['ssh_user', 'issued'],
  ]);
  sshd = await startSshd(agent.dir, {
    hostKey: join(hostDir, 'ssh_host'),
    hostCert: join(hostDir, 'ssh_host-cert.pub'),
    trustedUserCaKeys: join(hostDir, 'ssh_user_ca.pub'),
  });
});

afterAll(async () => {
  await sshd?.stop();
  agent?.close();
  await h?.close();
  user?.remove();
});

/**
 * `ssh -F <output>/ssh_config` to the name `host`. There is no DNS here, so the connection goes
 * to 127.0.0.1 and HostKeyAlias makes ssh check the host certificate and known_hosts against
 * `host` — exactly what it does for a name that resolves.
 */
const sshVia = (dir: string, host: string, login: string, ...cmd: string[]) =>
  ssh([
    '-F',
    join(dir, 'ssh_config'),
    '-p',
    String(sshd.port),
    '-o',
    'HostName=127.0.0.1',
    '-o',
    `HostKeyAlias=${host}`,
    '-l',
    login,
    host,
    ...cmd,
  ]);

describe('ssh_user + ssh_host outputs with real sshd and ssh', () => {
  it('the files are there with their modes, and ssh-keygen -L shows the principals and validity', () => {
    expect(statSync(join(userDir, 'id')).mode & 0o777).toBe(0o600);
    expect(statSync(join(hostDir, 'ssh_host')).mode & 0o777).toBe(0o600);
    for (const f of ['id-cert.pub', 'known_hosts', 'ssh_config', 'id.pub'])
      expect(statSync(join(userDir, f)).mode & 0o777).toBe(0o644);
    for (const f of ['ssh_host-cert.pub', 'ssh_user_ca.pub', 'ssh_host.pub'])
      expect(statSync(join(hostDir, f)).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(userDir, 'known_hosts'), 'utf8')).toMatch(
      /^@cert-authority \* ssh-ed25519 \S+ sigil-host-ca@example\.org\n$/,
    );

    const userCert = parseCertificateLine(readFileSync(join(userDir, 'id-cert.pub'), 'utf8'));
    const out = execFileSync('ssh-keygen', ['-L', '-f', join(userDir, 'id-cert.pub')], { encoding: 'utf8' });
    expect(out).toContain('ssh-ed25519-cert-v01@openssh.com user certificate');
    expect(out).toMatch(new RegExp(`Principals: \\n\\s+${user.name}\\n\\s+Critical Options`));
    expect(out).toContain(`Key ID: "${agent.state.getIdentity()!.spiffeId}"`);
    expect(out).toMatch(/Extensions: \n\s+permit-pty\n/);
    const p = (n: number): string => String(n).padStart(2, '0');
    const local = (d: Date): string =>
      `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    expect(out).toContain(`Valid: from ${local(userCert.validAfter)} to ${local(userCert.validBefore)}`);
    // ttl 30m, back-dated one minute.
    expect(userCert.validBefore.getTime() - userCert.validAfter.getTime()).toBe(31 * 60_000);

    const host = execFileSync('ssh-keygen', ['-L', '-f', join(hostDir, 'ssh_host-cert.pub')], { encoding: 'utf8' });
    expect(host).toContain('host certificate');
    expect(host).toMatch(new RegExp(`Principals: \\n\\s+${HOST.replace(/\./g, '\\.')}\\n\\s+localhost\\n`));
  });

  it('ssh -F ssh_config logs in with the user certificate and verifies the host by @cert-authority (StrictHostKeyChecking yes)', async () => {
    const r = await sshVia(userDir, HOST, user.name, 'echo', 'signed-in-as', '$(id -un)');
    expect(r.stderr).not.toMatch(/Warning: Permanently added/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`signed-in-as ${user.name}`);
    expect(sshd.log()).toMatch(
      new RegExp(
        `Accepted publickey for ${user.name} .* ED25519-CERT SHA256:\\S+ ID ${agent.state.getIdentity()!.spiffeId.replace(/[/.]/g, '\\$&')} \\(serial \\d+\\) CA ED25519`,
      ),
    );
  });

  it('sshd refuses a login that is not among the certificate principals', async () => {
    const r = await sshVia(userDir, HOST, 'root', 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
    expect(sshd.log()).toMatch(/name is not a listed principal/);
  });

  it('the issuer refuses a login beyond the role, and nothing is written', async () => {
    const dir = join(agent.dir, 'ssh-root');
    const [o] = await agent.outputs([{ type: 'ssh_user', path: dir, logins: ['root'] }]).refresh();
    expect(o!.action).toBe('failed');
    expect(o!.action === 'failed' && [o.error.code, o.error.message]).toEqual([
      'role_denied',
      'role ssh-ops does not allow login root (ssh_logins)',
    ]);
    expect(() => statSync(join(dir, 'id'))).toThrow();
  });

  it('ssh refuses a host whose certificate does not name it (no trust on first use)', async () => {
    const r = await sshVia(userDir, 'db9.example.org', user.name, 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Host key verification failed/);
  });

  it('sshd refuses an expired user certificate', async () => {
    const dir = join(agent.dir, 'ssh-expired');
    // An issuer clock two hours behind issues a 1-minute certificate that is long expired now.
    h.clock.offsetMs = -2 * 3600_000;
    h.ctx.skewMs = 3 * 3600_000;
    try {
      const [o] = await agent.outputs([{ type: 'ssh_user', path: dir, ttl: '1m' }]).refresh();
      expect(o!.action).toBe('issued');
    } finally {
      h.clock.offsetMs = 0;
      h.ctx.skewMs = 5 * 60_000;
    }
    expect(parseCertificateLine(readFileSync(join(dir, 'id-cert.pub'), 'utf8')).validBefore.getTime()).toBeLessThan(
      Date.now(),
    );
    const r = await sshVia(dir, HOST, user.name, 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(sshd.log()).toMatch(/Certificate invalid: expired/);
  });

  it('a forced rotation re-certifies the same host key, signals sshd through the reload hook, and logins keep working', async () => {
    const before = parseCertificateLine(readFileSync(join(hostDir, 'ssh_host-cert.pub'), 'utf8'));
    const hostKey = readFileSync(join(hostDir, 'ssh_host'), 'utf8');
    const logBefore = sshd.log().length;
    const [o] = await agent
      .outputs([{ type: 'ssh_host', path: hostDir, reload: { signal: 'HUP', pid_file: sshd.pidFile } }])
      .refresh({ force: true });
    expect(o).toMatchObject({ action: 'issued' });
    expect(o!.action === 'issued' && o.reloadError).toBeFalsy();
    const after = parseCertificateLine(readFileSync(join(hostDir, 'ssh_host-cert.pub'), 'utf8'));
    expect(after.serial).not.toBe(before.serial);
    expect(after.subject.blob.equals(before.subject.blob)).toBe(true);
    expect(readFileSync(join(hostDir, 'ssh_host'), 'utf8')).toBe(hostKey);
    await expect.poll(() => sshd.log().slice(logBefore), { timeout: 10_000 }).toMatch(/Received SIGHUP; restarting/);
    await expect
      .poll(() => /Server listening on 127\.0\.0\.1/.test(sshd.log().slice(logBefore)), { timeout: 10_000 })
      .toBe(true);
    const r = await sshVia(userDir, HOST, user.name, 'true');
    expect(r.code, r.stderr).toBe(0);
  });
});
