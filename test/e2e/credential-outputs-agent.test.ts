/**
 * Credential outputs through the real `sigil` processes: `agent run --once` joins and writes the
 * jwt, ssh_user and database outputs next to the identity; a second run leaves them alone until
 * they are due (or a file is missing); the daemon renews a short-lived output on its own
 * schedule. (An agent with only an MQTT transport gets its outputs through the broker:
 * mqtt-credential.test.ts.)
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { createRemoteJWKSet, customFetch, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCertificateLine } from '../../src/ssh/certificate.js';
import {
  applyResources,
  createToken,
  SIGIL,
  sigil,
  sigilJson,
  startIssuer,
  tempDir,
  writeAgentConfig,
  type RunningIssuer,
} from '../helpers/cli.js';

const POLICY = `kind: role
name: edge
spec: { max_ttl: 2h, allowed_outputs: [identity, jwt, ssh_user, database], jwt_audiences: [vault], ssh_logins: ["{{internal.logins}}"], db_users: [app] }
---
kind: bot
name: gw
spec: { roles: [edge], traits: { logins: [ops] } }
`;

const tmp = tempDir('sigil-cred-agent-');
let issuer: RunningIssuer;
let rootPem: string;

beforeAll(async () => {
  issuer = await startIssuer(tmp.path);
  await applyResources(issuer, tmp.path, POLICY);
  rootPem = readFileSync(join(issuer.dataDir, 'ca', 'root.pem'), 'utf8');
});
afterAll(async () => {
  await issuer?.stop();
  tmp.cleanup();
});

const outputs = (dir: string, jwtTtl = '10m'): string =>
  [
    `  - { type: jwt, path: ${dir}/jwt, audiences: [vault], ttl: ${jwtTtl} }`,
    `  - { type: ssh_user, path: ${dir}/ssh }`,
    `  - { type: database, path: ${dir}/db, db_user: app }`,
    '',
  ].join('\n');

function fetchTrusting(ca: string) {
  return (url: string): Promise<Response> =>
    new Promise((resolve, reject) => {
      https
        .get(url, { ca }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0 })));
        })
        .on('error', reject);
    });
}

describe('agent run with credential outputs', () => {
  it('--once writes every output; a second run re-issues only what is missing', async () => {
    const dir = join(tmp.path, 'a1');
    const a = writeAgentConfig(tmp.path, 'a1', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: outputs(dir),
    });
    const joined = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(joined.result).toBe('joined');

    const token = readFileSync(join(dir, 'jwt', 'token'), 'utf8');
    const fetchCa = fetchTrusting(rootPem);
    const conf = (await (await fetchCa(`${issuer.url}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
      jwks_uri: string;
    };
    const { payload } = await jwtVerify(
      token,
      createRemoteJWKSet(new URL(conf.jwks_uri), { [customFetch]: (u: string) => fetchCa(u) }),
      { issuer: issuer.url, audience: 'vault' },
    );
    expect(payload.sub).toBe(joined.spiffe_id);
    expect(parseCertificateLine(readFileSync(join(dir, 'ssh', 'id-cert.pub'), 'utf8')).principals).toEqual(['ops']);
    expect(readFileSync(join(dir, 'db', 'tls.crt'), 'utf8')).toMatch(/BEGIN CERTIFICATE/);
    expect(statSync(join(dir, 'db', 'tls.key')).mode & 0o777).toBe(0o600);

    const sshCert = readFileSync(join(dir, 'ssh', 'id-cert.pub'), 'utf8');
    unlinkSync(join(dir, 'jwt', 'token'));
    const again = await sigilJson(['agent', 'run', '--config', a.config, '--once']);
    expect(again.result).toBe('none');
    expect(readFileSync(join(dir, 'jwt', 'token'), 'utf8')).not.toBe(token);
    expect(readFileSync(join(dir, 'ssh', 'id-cert.pub'), 'utf8')).toBe(sshCert);
  });

  it('--once exits 1 when an output is refused (the others are written), with one error line naming it', async () => {
    const dir = join(tmp.path, 'a3');
    const a = writeAgentConfig(tmp.path, 'a3', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: [
        `  - { type: jwt, path: ${dir}/jwt, audiences: [vault] }`,
        `  - { type: jwt, path: ${dir}/denied, audiences: [not-allowed] }`,
        '',
      ].join('\n'),
    });
    const r = await sigil(['agent', 'run', '--config', a.config, '--once', '--format', 'json']);
    expect(r.code, r.stderr).toBe(1);
    const out = JSON.parse(r.stdout) as { result: string; credential_outputs: Array<{ path: string; action: string }> };
    expect(out.result).toBe('joined');
    expect(out.credential_outputs.map((o) => [o.path, o.action])).toEqual([
      [`${dir}/jwt`, 'issued'],
      [`${dir}/denied`, 'failed'],
    ]);
    expect(existsSync(join(dir, 'jwt', 'token'))).toBe(true);
    const errors = r.stderr
      .split('\n')
      .filter((l) => l.startsWith('{"error"'))
      .map((l) => JSON.parse(l) as { error: { code: string; message: string; retryable: boolean } });
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error.message).toContain(`jwt output ${dir}/denied: `);
    expect(errors[0]!.error.retryable).toBe(false);
    // Said once, as the error line: not also as the daemon's warning log line (runbook "Errors").
    expect(r.stderr).not.toMatch(/output credential failed/);

    // Run again at once: the refused output waits out its backoff (no new request), but the run
    // still fails and says so, instead of "not due" and exit 0.
    // The first backoff is 250 ms–1 s: a loaded machine may start the rerun after it, and then the
    // output is asked (and refused) again — a longer backoff each time, so a rerun lands inside
    // one within a few tries (a CI run met it).
    type Summary = { credential_outputs: Array<{ path: string; action: string; error?: string }> };
    let again = await sigil(['agent', 'run', '--config', a.config, '--once', '--format', 'json']);
    let outAgain = JSON.parse(again.stdout) as Summary;
    const denied = (s: Summary) => s.credential_outputs.find((o) => o.path === `${dir}/denied`);
    for (let i = 0; i < 5 && denied(outAgain)?.action === 'failed'; i++) {
      expect(again.code, again.stderr).toBe(1);
      again = await sigil(['agent', 'run', '--config', a.config, '--once', '--format', 'json']);
      outAgain = JSON.parse(again.stdout) as Summary;
    }
    expect(again.code, again.stderr).toBe(1);
    expect(denied(outAgain)).toMatchObject({
      action: 'none',
      error: errors[0]!.error.code,
    });
    expect(again.stderr).toMatch(
      /jwt output .*denied: .*failed \d+ times?; next attempt after .*or now with sigil agent renew/,
    );
  });

  it('the daemon renews a short-lived output on its own schedule', async () => {
    const dir = join(tmp.path, 'a2');
    const a = writeAgentConfig(tmp.path, 'a2', {
      url: issuer.url,
      pin: issuer.pin,
      token: await createToken(issuer),
      extra: outputs(dir, '30s'),
    });
    const proc = spawn(process.execPath, [SIGIL, 'agent', 'run', '--config', a.config], {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      // Outputs are written one after the other: wait for the last one.
      const written = (): boolean =>
        ['jwt/token', 'ssh/id-cert.pub', 'db/tls.crt'].every((f) => existsSync(join(dir, f)));
      await expect.poll(written, { timeout: 20_000 }).toBe(true);
      const first = readFileSync(join(dir, 'jwt', 'token'), 'utf8');
      const sshCert = readFileSync(join(dir, 'ssh', 'id-cert.pub'), 'utf8');
      // Renewed at ~half of 30 s (±10%), well before the 1 h identity and the 1 h SSH certificate.
      await expect
        .poll(() => readFileSync(join(dir, 'jwt', 'token'), 'utf8'), { timeout: 30_000, interval: 500 })
        .not.toBe(first);
      expect(readFileSync(join(dir, 'ssh', 'id-cert.pub'), 'utf8')).toBe(sshCert);
      expect(log).toMatch(/output credential issued/);
    } finally {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  });
});
