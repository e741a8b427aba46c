/**
 * The credential pieces of the `sigil` command, as real processes: `server init` creates the SSH
 * CAs and the JWT key (0600); a data directory initialised before they existed gets them on its
 * first `server start`; `ctl ca export` prints what consumers are configured with, identical to
 * what the running issuer serves; `--public-url` sets the OIDC issuer and the TLS name.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialKeyPaths } from '../../src/server/credential-keys.js';
import { parseAuthorizedKey } from '../../src/ssh/public-key.js';
import { SIGIL, sigil, sigilJson, tempDir } from '../helpers/cli.js';
import { freePort } from '../helpers/mosquitto.js';

const tmp = tempDir('sigil-cred-cli-');
const running: ChildProcess[] = [];
afterAll(async () => {
  for (const p of running) if (p.exitCode === null) p.kill('SIGTERM');
  tmp.cleanup();
});

async function start(
  dataDir: string,
  args: string[],
): Promise<{ url: string; proc: ChildProcess; output: () => string }> {
  const proc = spawn(process.execPath, [SIGIL, 'server', 'start', '--data-dir', dataDir, ...args], {
    env: { ...process.env, SIGIL_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(proc);
  let err = '';
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${err}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.on('exit', (code) => reject(new Error(`issuer exited ${code}: ${err}`)));
  });
  return { url, proc, output: () => out + err };
}

function get(url: string, ca: string, servername?: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    https
      .get(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          ca,
          ...(servername
            ? {
                host: '127.0.0.1',
                servername,
                headers: { host: servername },
                checkServerIdentity: (_h: string, cert: PeerCertificate) =>
                  cert.subjectaltname?.split(', ').includes(`DNS:${servername}`)
                    ? undefined
                    : new Error(`no SAN ${servername}`),
              }
            : {}),
        },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(body) }));
        },
      )
      .on('error', reject);
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

describe('sigil server init / start / ctl ca export', () => {
  const dataDir = join(tmp.path, 'issuer');
  let rootPem: string;

  beforeAll(async () => {
    await sigilJson(['server', 'init', '--data-dir', dataDir, '--trust-domain', 'example.org']);
    rootPem = readFileSync(join(dataDir, 'ca', 'root.pem'), 'utf8');
  });

  it('init creates the SSH user and host CAs and the JWT key, 0600', () => {
    for (const f of Object.values(credentialKeyPaths(dataDir))) expect(statSync(f).mode & 0o777).toBe(0o600);
  });

  it('ca export prints a TrustedUserCAKeys line, a known_hosts @cert-authority line, the root and the JWKS — the same the issuer serves', async () => {
    const user = (await sigil(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'ssh-user'])).stdout;
    const host = (
      await sigil(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'ssh-host', '--hosts', '*.example.org'])
    ).stdout;
    const x509 = (await sigil(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'x509'])).stdout;
    const jwks = JSON.parse((await sigil(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'jwks'])).stdout);
    expect(user).toMatch(/^ssh-ed25519 AAAA\S+ sigil-user-ca@example\.org\n$/);
    expect(parseAuthorizedKey(user.trim()).type).toBe('ssh-ed25519');
    expect(host).toMatch(/^@cert-authority \*\.example\.org ssh-ed25519 AAAA\S+ sigil-host-ca@example\.org\n$/);
    expect(host.split(' ')[3]).not.toBe(user.split(' ')[1]); // two different CAs
    // ssh-keygen reads both as keys.
    writeFileSync(join(tmp.path, 'user_ca.pub'), user);
    expect(execFileSync('ssh-keygen', ['-l', '-f', join(tmp.path, 'user_ca.pub')], { encoding: 'utf8' })).toMatch(
      /ED25519/,
    );
    expect(x509).toBe(rootPem);
    const json = await sigilJson(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'ssh-user']);
    expect(json).toEqual({ type: 'ssh-user', material: user });

    const { url, proc } = await start(dataDir, ['--listen', '127.0.0.1:0']);
    try {
      expect((await get(`${url}/v1/jwks`, rootPem)).json).toEqual(jwks);
      expect((await get(`${url}/.well-known/openid-configuration`, rootPem)).json.issuer).toBe(url);
    } finally {
      await stop(proc);
    }
    const bad = await sigil(['ctl', '--data-dir', dataDir, 'ca', 'export', '--type', 'pgp']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^error\[bad_request\]: --type must be one of ssh-user, ssh-host, x509, jwks/);
  });

  it('a data directory initialised before the credential keys existed gets them on its first start', async () => {
    const old = join(tmp.path, 'old-issuer');
    await sigilJson(['server', 'init', '--data-dir', old, '--trust-domain', 'example.org']);
    const keys = credentialKeyPaths(old);
    for (const f of Object.values(keys)) rmSync(f);
    const { url, proc, output } = await start(old, ['--listen', '127.0.0.1:0']);
    try {
      // Said, not silent: after a restore that lacked them, every relying party's anchor changed.
      expect(output()).toContain('created new credential keys');
      for (const f of Object.values(keys)) {
        expect(existsSync(f)).toBe(true);
        expect(statSync(f).mode & 0o777).toBe(0o600);
      }
      const served = (await get(`${url}/v1/jwks`, readFileSync(join(old, 'ca', 'root.pem'), 'utf8'))).json;
      const exported = JSON.parse((await sigil(['ctl', '--data-dir', old, 'ca', 'export', '--type', 'jwks'])).stdout);
      expect(served).toEqual(exported);
    } finally {
      await stop(proc);
    }
  });

  it('--public-url is the OIDC issuer and its host is in the TLS certificate; a non-https URL is refused', async () => {
    const port = await freePort();
    const publicUrl = `https://sigil.example.test:${port}/`;
    const { proc, output } = await start(dataDir, ['--listen', `127.0.0.1:${port}`, '--public-url', publicUrl]);
    try {
      expect(output()).not.toContain('created new credential keys'); // init made them
      const conf = (
        await get(`https://127.0.0.1:${port}/.well-known/openid-configuration`, rootPem, 'sigil.example.test')
      ).json;
      expect(conf).toMatchObject({
        issuer: `https://sigil.example.test:${port}`,
        jwks_uri: `https://sigil.example.test:${port}/v1/jwks`,
      });
    } finally {
      await stop(proc);
    }
    const bad = await sigil([
      'server',
      'start',
      '--data-dir',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--public-url',
      'http://sigil.example.test',
    ]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^error\[config_invalid\]: --public-url must be https:/);
  });
});
