/**
 * `key: tpm` for the database output: the client key is made inside a (software) TPM and
 * tls.key is a `TSS2 PRIVATE KEY` file. OpenSSL's tpm2 provider reads it, derives the certified
 * public key, and — behind tpm2-abrmd, the TPM issue's rig — authenticates a TLS client with it
 * to an `openssl s_server` that requires a client certificate from the Sigil CA.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityKeyPem } from '../../src/agent/outputs/identity-key.js';
import { SVID_TSS2_KEY_FILE, writeIdentityOutput } from '../../src/agent/outputs/identity.js';
import { TpmSigner } from '../../src/keystore/tpm.js';
import { TpmAccess } from '../../src/keystore/tpm-access.js';
import { readTss2Pem } from '../../src/keystore/tss2-pem.js';
import { toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { runAdminOp } from '../../src/server/admin/ops.js';
import { credentialAgent, type CredentialAgent } from '../helpers/credential-agent.js';
import { freePort } from '../helpers/mosquitto.js';
import { startSwtpm, type SwtpmInstance } from '../helpers/swtpm.js';
import { startTabrmd } from '../helpers/tabrmd.js';
import { startIssuer, type Harness } from './harness.js';

let h: Harness;
let agent: CredentialAgent;
let tpm: SwtpmInstance;

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { input?: string; cwd?: string } = {},
): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
    if (opts.input !== undefined) setTimeout(() => p.stdin.end(opts.input), 500);
    else p.stdin.end();
  });
}

beforeAll(async () => {
  tpm = await startSwtpm({ ekCerts: false });
  h = await startIssuer();
  await runAdminOp(h.ctx.stores, 'apply', {
    yaml: 'kind: role\nname: db\nspec: { allowed_outputs: [database], db_users: [app] }\n---\nkind: bot\nname: dbbot\nspec: { roles: [db] }\n',
  });
  agent = await credentialAgent(h, { bot: 'dbbot' });
});

afterAll(async () => {
  agent?.close();
  await h?.close();
  await tpm?.destroy();
});

describe('database output with key: tpm', () => {
  it('writes a TSS2 key that OpenSSL (tpm2 provider) uses for TLS client authentication', async () => {
    const dir = join(agent.dir, 'db');
    const [o] = await agent.outputs([{ type: 'database', path: dir, key: 'tpm', tcti: tpm.tcti }]).refresh();
    expect(o).toMatchObject({ action: 'issued' });
    const keyPem = readFileSync(join(dir, 'tls.key'), 'utf8');
    expect(keyPem).toMatch(/^-----BEGIN TSS2 PRIVATE KEY-----/);
    expect(readTss2Pem(keyPem)).toMatchObject({ parent: 0x40000001, emptyAuth: true });
    expect(statSync(join(dir, 'tls.key')).mode & 0o777).toBe(0o600);

    // OpenSSL derives the certified public key from the TSS2 file (straight on swtpm).
    const pub = await run(
      'openssl',
      ['pkey', '-provider', 'tpm2', '-provider', 'default', '-in', join(dir, 'tls.key'), '-pubout'],
      { ...process.env, TPM2OPENSSL_TCTI: tpm.tcti },
    );
    expect(pub.code, pub.out).toBe(0);
    const leaf = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
    expect(pub.out).toBe(leaf.publicKey.export({ type: 'spki', format: 'pem' }));
    expect(leaf.subject).toBe('CN=app');

    // A TLS server that requires a client certificate from the Sigil root.
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const serverCert = h.ctx.engine.issueSvid({
      serial: randomSerial(),
      spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
      spiffeId: 'spiffe://example.org/service/db',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
      ipAddresses: ['127.0.0.1'],
    });
    writeFileSync(join(agent.dir, 'server.crt'), toPem('CERTIFICATE', serverCert));
    writeFileSync(join(agent.dir, 'server-chain.crt'), h.ctx.ca.intermediatePem);
    writeFileSync(join(agent.dir, 'server.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
      mode: 0o600,
    });
    const broker = await startTabrmd(tpm.tcti);
    const port = await freePort();
    const server = spawn(
      'openssl',
      [
        's_server',
        '-accept',
        `127.0.0.1:${port}`,
        '-cert',
        'server.crt',
        '-cert_chain',
        'server-chain.crt',
        '-key',
        'server.key',
        '-Verify',
        '2',
        '-verify_return_error',
        '-CAfile',
        join(dir, 'ca.crt'),
        '-naccept',
        '1',
      ],
      { cwd: agent.dir, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let serverOut = '';
    server.stdout.on('data', (d: Buffer) => (serverOut += d.toString()));
    server.stderr.on('data', (d: Buffer) => (serverOut += d.toString()));
    try {
      for (let i = 0; i < 200 && !serverOut.includes('ACCEPT'); i++) await new Promise((r) => setTimeout(r, 50));
      expect(serverOut).toContain('ACCEPT');
      const client = await run(
        'openssl',
        [
          's_client',
          '-provider',
          'tpm2',
          '-provider',
          'default',
          '-propquery',
          '?provider=tpm2',
          '-connect',
          `127.0.0.1:${port}`,
          '-cert',
          join(dir, 'tls.crt'),
          '-cert_chain',
          join(dir, 'tls.crt'),
          '-key',
          join(dir, 'tls.key'),
          '-CAfile',
          join(dir, 'ca.crt'),
          '-verify_return_error',
        ],
        broker.env,
        { input: 'Q\n' },
      );
      // (s_client sends only the first certificate of -cert; -cert_chain adds the intermediate,
      // which libpq and kubectl send by themselves from the same file.)
      expect(client.out, `${client.out}\n--- server ---\n${serverOut}`).toMatch(/Verify return code: 0 \(ok\)/);
      await new Promise((r) => setTimeout(r, 300));
      // The server saw and verified the client certificate made for the TPM key.
      expect(serverOut, serverOut).toMatch(/depth=0 CN = app/);
      expect(serverOut).not.toMatch(/verify error/);
    } finally {
      server.kill('SIGTERM');
      await broker.stop();
    }
  });

  it('a TPM-resident identity key is written by the identity output as svid.tss2.pem, which OpenSSL can use', async () => {
    const signer = await TpmSigner.create(new TpmAccess(tpm.tcti));
    const keyPem = identityKeyPem(signer.ref)!;
    expect(keyPem).toBe(signer.toTss2Pem());
    const dir = join(agent.dir, 'svid');
    writeIdentityOutput(dir, {
      certPem: agent.state.getIdentity()!.chainPem.join(''),
      keyPem,
      keyFile: SVID_TSS2_KEY_FILE,
      bundlePem: h.rootPem,
    });
    expect(statSync(join(dir, 'svid.tss2.pem')).mode & 0o777).toBe(0o600);
    const pub = await run(
      'openssl',
      [
        'pkey',
        '-provider',
        'tpm2',
        '-provider',
        'default',
        '-in',
        join(dir, 'svid.tss2.pem'),
        '-pubout',
        '-outform',
        'DER',
      ],
      { ...process.env, TPM2OPENSSL_TCTI: tpm.tcti },
    );
    expect(pub.code, pub.out).toBe(0);
    expect(identityKeyPem({ storage: 'pkcs11', module: '/x.so', tokenLabel: 't', keyLabel: 'k' })).toBeUndefined();
  });
});
