/**
 * A relying party that loads Sigil's CRL: a mosquitto TLS listener with `require_certificate
 * true`, `cafile` (the Sigil root) and `crlfile` (docs/crl.md "Configuring relying parties"), and
 * an `openssl s_client` that connects to it with a client certificate — also one whose key lives
 * in a TPM (the agent's `svid.tss2.pem`, through OpenSSL's tpm2 provider), which Node's TLS
 * cannot use.
 *
 * A completed TLS 1.3 handshake does not mean the client certificate was accepted (the server
 * judges it after the client's Finished, and sends its alert afterwards), so the client sends an
 * MQTT CONNECT through the tunnel: a CONNACK is the broker's acceptance, and an alert (`alert
 * certificate revoked`) its refusal.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { MOSQUITTO, freePort, issueBrokerCert, requireMosquitto } from './mosquitto.js';

export interface CrlBroker {
  port: number;
  log(): string;
  stop(): Promise<void>;
}

/** Start mosquitto on 127.0.0.1 with client certificates checked against `caPemFile` and `crlFile`. */
export async function startCrlBroker(
  dir: string,
  issuerDataDir: string,
  caPemFile: string,
  crlFile: string,
): Promise<CrlBroker> {
  requireMosquitto();
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const server = issueBrokerCert(issuerDataDir);
  writeFileSync(join(dir, 'server.pem'), server.certPem);
  writeFileSync(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${caPemFile}`,
      `certfile ${join(dir, 'server.pem')}`,
      `keyfile ${join(dir, 'server.key')}`,
      `crlfile ${crlFile}`,
      'require_certificate true',
      'use_identity_as_username true',
      'allow_anonymous false',
      `log_dest file ${join(dir, 'mosquitto.log')}`,
      'log_type all',
      // As root (tests in a container), mosquitto would switch to a user that cannot read the temp dir.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ].join('\n') + '\n',
  );
  const out = join(dir, 'stderr.log');
  const p = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', openSync(out, 'w'), openSync(out, 'a')] });
  const log = (): string => {
    let s = readFileSync(out, 'utf8');
    try {
      s += readFileSync(join(dir, 'mosquitto.log'), 'utf8');
    } catch {
      // not written yet
    }
    return s;
  };
  const end = Date.now() + 10_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (open) break;
    if (p.exitCode !== null || Date.now() > end) {
      p.kill('SIGKILL');
      throw new Error(`mosquitto (crlfile) did not start: ${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    log,
    stop: () =>
      new Promise((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        p.once('exit', () => resolve());
        p.kill('SIGTERM');
      }),
  };
}

export interface TlsClientVerdict {
  /** The broker answered the client's MQTT CONNECT with CONNACK: TLS, client certificate included, was accepted. */
  accepted: boolean;
  out: string;
}

/** MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, client id "t") and the CONNACK "accepted" answer. */
const CONNECT = Buffer.from('100d00044d5154540402003c000174', 'hex');
const CONNACK_ACCEPTED = Buffer.from('20020000', 'hex');

/**
 * `openssl s_client` to the broker with `certFile` (leaf first, then the intermediate, which it
 * also sends) and `keyFile`, then an MQTT CONNECT through it. `tpmEnv`: the key is a TSS2
 * PRIVATE KEY, used through OpenSSL's tpm2 provider with this environment — that of a tpm2-abrmd
 * in front of the TPM (./tabrmd.ts: directly on swtpm the provider runs out of object slots). Resolves when the broker answers CONNACK
 * (accepted) or the connection ends without one (refused: `out` has OpenSSL's reason).
 */
export function tlsClient(
  port: number,
  o: { certFile: string; keyFile: string; caFile: string; tpmEnv?: NodeJS.ProcessEnv },
): Promise<TlsClientVerdict> {
  const provider = o.tpmEnv ? ['-provider', 'tpm2', '-provider', 'default', '-propquery', '?provider=tpm2'] : [];
  const args = ['s_client', ...provider, '-connect', `127.0.0.1:${port}`, '-quiet', '-ign_eof'];
  args.push('-cert', o.certFile, '-cert_chain', o.certFile, '-key', o.keyFile, '-CAfile', o.caFile);
  args.push('-verify_return_error');
  return new Promise((resolve, reject) => {
    const env = o.tpmEnv ? { ...process.env, ...o.tpmEnv } : process.env;
    const p = spawn('openssl', args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = Buffer.alloc(0);
    let stderr = '';
    let accepted = false;
    const out = (): string => `${stderr}${stdout.toString('latin1')}`;
    p.stdout.on('data', (d: Buffer) => {
      stdout = Buffer.concat([stdout, d]);
      if (!accepted && stdout.includes(CONNACK_ACCEPTED)) {
        accepted = true;
        p.kill('SIGTERM');
      }
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('error', reject);
    p.on('close', () => {
      clearTimeout(t);
      resolve({ accepted, out: out() });
    });
    p.stdin.on('error', () => undefined); // the broker may hang up before the CONNECT is written
    p.stdin.write(CONNECT);
  });
}
