/**
 * Real mosquitto for the MQTT tests: started on free 127.0.0.1 ports with its config,
 * persistence and logs in a temp dir, stopped (or killed, or restarted with its persistence)
 * on demand. The TLS mode uses scripts/mosquitto/mosquitto.conf.example and
 * dynamic-security.json.example, with their placeholder paths and ports substituted and the
 * bootstrap passwords set; the plain mode is one anonymous listener.
 *
 * Also here: a Sigil-issued broker certificate, and issuer processes started with --mqtt-*
 * options (test/helpers/cli.ts starts HTTPS-only issuers).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { listensOn } from './port-owner.js';
import { CertificateIssuer } from '../../src/pki/issue.js';
import { toPem } from '../../src/pki/pem.js';
import { randomSerial } from '../../src/pki/serial.js';
import { loadCaMaterial } from '../../src/server/data-dir.js';
import { applyResources, initIssuer, ROOT, SIGIL, tempDir, type RunningIssuer } from './cli.js';

export const MOSQUITTO = '/usr/sbin/mosquitto';
const INSTALL = 'mosquitto is not installed; install it with: apt-get install -y mosquitto (scripts/setup.sh does)';

export function requireMosquitto(): void {
  if (!existsSync(MOSQUITTO)) throw new Error(INSTALL);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface BrokerTls {
  /** The broker's server certificate chain, key, and the CA that verifies client certificates. */
  certPem: string;
  keyPem: string;
  caPem: string;
  /** CA for the issuers' listener (default caPem); never a factory CA (docs/mqtt.md). */
  issuerCaPem?: string;
  /** Bootstrap logins for the password listener. */
  passwords: Record<string, string>;
}

export interface Broker {
  /** The main listener: anonymous (plain) or client certificates (tls). */
  url: string;
  port: number;
  /** tls mode: the bootstrap (password) listener. */
  bootstrapUrl: string | undefined;
  /** Where issuers connect: tls mode, their own listener; plain mode, the one listener. */
  issuerUrl: string;
  dir: string;
  get pid(): number | undefined;
  log(): string;
  /** SIGTERM and wait (mosquitto saves its persistence file on a clean stop). */
  stop(): Promise<void>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** Start again on the same ports with the same persistence. */
  start(): Promise<void>;
}

const PLAIN_CONF = (dir: string, port: number): string => `per_listener_settings false
persistence true
persistence_location ${dir}/data/
max_queued_messages 20000
max_packet_size 1048576
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_type notice
listener ${port} 127.0.0.1
allow_anonymous true
`;

function tlsConf(dir: string, ports: { agent: number; bootstrap: number; issuer: number }): string {
  const example = readFileSync(join(ROOT, 'scripts', 'mosquitto', 'mosquitto.conf.example'), 'utf8');
  const conf = example
    .replaceAll('/etc/mosquitto/sigil', dir)
    .replace(/^listener 8883$/m, `listener ${ports.agent} 127.0.0.1`)
    .replace(/^listener 8884$/m, `listener ${ports.bootstrap} 127.0.0.1`)
    .replace(/^listener 8885$/m, `listener ${ports.issuer} 127.0.0.1`);
  if (conf === example || Object.values(ports).some((p) => !conf.includes(`listener ${p} 127.0.0.1`)))
    throw new Error('mosquitto.conf.example no longer has the placeholders this helper substitutes');
  return conf;
}

/** The example dynamic-security file with the test's bootstrap passwords (scripts/mosquitto/dynsec-password.mjs). */
async function dynsecConfig(passwords: Record<string, string>): Promise<string> {
  const { withPassword } = (await import(join(ROOT, 'scripts', 'mosquitto', 'dynsec-password.mjs'))) as {
    withPassword(json: string, user: string, pw: string): string;
  };
  let json = readFileSync(join(ROOT, 'scripts', 'mosquitto', 'dynamic-security.json.example'), 'utf8');
  for (const [user, pw] of Object.entries(passwords)) json = withPassword(json, user, pw);
  return json;
}

export async function startMosquitto(dir: string, tls?: BrokerTls): Promise<Broker> {
  requireMosquitto();
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const bootstrapPort = tls ? await freePort() : undefined;
  const issuerPort = tls ? await freePort() : port;
  let conf: string;
  if (tls) {
    conf = tlsConf(dir, { agent: port, bootstrap: bootstrapPort!, issuer: issuerPort });
    writeFileSync(join(dir, 'broker.pem'), tls.certPem);
    writeFileSync(join(dir, 'broker.key'), tls.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), tls.caPem);
    writeFileSync(join(dir, 'sigil-root.pem'), tls.issuerCaPem ?? tls.caPem);
    writeFileSync(join(dir, 'dynamic-security.json'), await dynsecConfig(tls.passwords), { mode: 0o600 });
  } else {
    conf = PLAIN_CONF(dir, port);
  }
  // Run as root (as tests in a container do), mosquitto would switch to the `mosquitto` user,
  // which cannot read a temp dir; keep the test's own user.
  if (process.getuid?.() === 0) conf += '\nuser root\n';
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(confFile, conf);

  let proc: ChildProcess | undefined;
  let logs = '';
  const start = async (): Promise<void> => {
    const p = spawn(MOSQUITTO, ['-c', confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    p.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    const end = Date.now() + 10_000;
    // Mosquitto's own listening sockets, not "something accepts on the port": another process
    // may have taken a port between freePort and this bind (test/helpers/port-owner.ts).
    const ours = (q: number): boolean => p.pid !== undefined && listensOn(p.pid, q);
    while (!ours(port) || (bootstrapPort !== undefined && !ours(bootstrapPort)) || !ours(issuerPort)) {
      if (p.exitCode !== null) throw new Error(`mosquitto exited ${p.exitCode}: ${logs}`);
      if (Date.now() > end) throw new Error(`mosquitto did not listen on ${port} within 10 s: ${logs}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(sig);
    await exited;
  };
  await start();
  const scheme = tls ? 'mqtts' : 'mqtt';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    bootstrapUrl: bootstrapPort !== undefined ? `mqtts://127.0.0.1:${bootstrapPort}` : undefined,
    issuerUrl: `${scheme}://127.0.0.1:${issuerPort}`,
    dir,
    get pid() {
      return proc?.pid;
    },
    log: () => logs,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    start,
  };
}

/**
 * A broker certificate from the Sigil CA of `issuerDataDir` (so agents verify the broker with
 * their pinned root). Its SPIFFE ID is .../sigil/broker: never the issuer's, whose signature
 * agents accept on responses.
 */
export function issueBrokerCert(issuerDataDir: string): { certPem: string; keyPem: string; caPem: string } {
  const ca = loadCaMaterial(issuerDataDir);
  const engine = new CertificateIssuer({ caCertDer: ca.intermediateDer, caKey: ca.intermediateKey });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const der = engine.issueSvid({
    serial: randomSerial(),
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    spiffeId: `spiffe://${ca.trustDomain}/sigil/broker`,
    notBefore: new Date(now - 300_000),
    notAfter: new Date(now + 86_400_000),
    subject: [['CN', 'sigil test broker']],
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  return {
    // The root goes in the certfile too: an agent that has not met the issuer yet finds its
    // pinned root in the presented chain (docs/mqtt.md, like the issuer's own TLS chain).
    certPem: toPem('CERTIFICATE', der) + ca.intermediatePem.trim() + '\n' + ca.rootPem.trim() + '\n',
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    caPem: ca.rootPem,
  };
}

export interface IssuerProcess {
  proc: ChildProcess;
  url: string;
  log(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/**
 * `sigil server start --data-dir D --listen L [extra args]`; resolves once HTTPS listens and,
 * with --mqtt-url among the args, once the responder has subscribed.
 */
export async function spawnIssuer(
  dataDir: string,
  extra: string[],
  listen = '127.0.0.1:0',
  env: NodeJS.ProcessEnv = {},
): Promise<IssuerProcess> {
  const proc = spawn(
    process.execPath,
    [SIGIL, 'server', 'start', '--data-dir', dataDir, '--listen', listen, ...extra],
    {
      env: { ...process.env, SIGIL_LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let logs = '';
  proc.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  const wantMqtt = extra.includes('--mqtt-url');
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`issuer did not start: ${out} ${logs}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (https:\/\/\S+)/.exec(out);
      if (m && (!wantMqtt || /mqtt responder subscribed/.test(out))) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`issuer exited ${code}: ${out} ${logs}`));
    });
  });
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(sig);
    await exited;
  };
  return { proc, url, log: () => logs, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') };
}

/** An agent.yaml with a `transports:` list (YAML lines, each starting with "  - "). */
export function writeTransportAgent(
  dir: string,
  name: string,
  o: { pin: string; token: string; transports: string[]; extra?: string },
): { config: string; dataDir: string; outDir: string } {
  const dataDir = join(dir, name, 'data');
  const outDir = join(dir, name, 'identity');
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    `ca_pin: ${o.pin}\ndata_dir: ${dataDir}\njoin: { method: token, token: ${o.token} }\ntransports:\n${o.transports.map((t) => `  - ${t}\n`).join('')}outputs:\n  - { type: identity, path: ${outDir} }\n${o.extra ?? ''}`,
  );
  return { config, dataDir, outDir };
}

/** GET /metrics of an issuer (its TLS is checked by agents elsewhere; here only the numbers matter). */
export async function issuerMetrics(url: string): Promise<string> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    https
      .get(`${url}/metrics`, { rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** Read-only peek into an issuer's SQLite store (certificates per request id, instance lock state). */
export async function issuerDb<T>(issuerDataDir: string, fn: (db: import('better-sqlite3').Database) => T): Promise<T> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(issuerDataDir, 'issuer.db'), { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * What most MQTT e2e files start from: a broker in `dir/broker`, an initialised issuer data dir
 * with the standard role and bot applied, and (with `startMqttIssuerRig`) one issuer serving
 * that broker.
 */
export async function prepareMqttIssuer(dir: string, dataDir: string): Promise<{ broker: Broker; pin: string }> {
  const broker = await startMosquitto(join(dir, 'broker'));
  const pin = await initIssuer(dataDir);
  await applyResources({ dataDir } as RunningIssuer, dir);
  return { broker, pin };
}

export async function startMqttIssuerRig(
  dir: string,
  dataDir: string,
): Promise<{ broker: Broker; pin: string; issuer: IssuerProcess }> {
  const { broker, pin } = await prepareMqttIssuer(dir, dataDir);
  return { broker, pin, issuer: await spawnIssuer(dataDir, ['--mqtt-url', broker.url]) };
}

/** The bootstrap login of {@link startExampleBroker}'s password listener. */
export const BOOTSTRAP_PASSWORD = 'bootstrap-secret';

/**
 * The example broker configuration (scripts/mosquitto/: certificate agents, a bootstrap password
 * listener, the issuers' listener) with a broker certificate from the issuer's CA, the bootstrap
 * password written to `pwFile` (0600) for agents' `password_file`, and one issuer serving the
 * issuers' listener. `tls` overrides parts of the broker's TLS (a factory CA for devices, say).
 */
export async function startExampleBroker(
  dir: string,
  dataDir: string,
  pwFile: string,
  tls: Partial<Omit<BrokerTls, 'passwords'>> = {},
): Promise<{ broker: Broker; issuer: IssuerProcess; rootPem: string }> {
  const cert = issueBrokerCert(dataDir);
  const broker = await startMosquitto(join(dir, 'broker'), {
    ...cert,
    ...tls,
    passwords: { bootstrap: BOOTSTRAP_PASSWORD },
  });
  writeFileSync(pwFile, `${BOOTSTRAP_PASSWORD}\n`, { mode: 0o600 });
  try {
    return { broker, issuer: await spawnIssuer(dataDir, ['--mqtt-url', broker.issuerUrl]), rootPem: cert.caPem };
  } catch (e) {
    await broker.stop();
    throw e;
  }
}

/**
 * A fresh issuer (trust domain example.org, the default resources) behind the example broker, in
 * its own temp dir: `start()` in beforeAll, `stop()` in afterAll; `mqtts()` is an agent's mqtts
 * transport entry (the certificate listener, the bootstrap login for the join).
 */
export function exampleMqttsRig(prefix: string): {
  dir: string;
  admin: RunningIssuer;
  readonly pin: string;
  readonly broker: Broker;
  start(): Promise<void>;
  stop(): Promise<void>;
  mqtts(): string;
} {
  const tmp = tempDir(prefix);
  const dataDir = join(tmp.path, 'issuer');
  const pwFile = join(tmp.path, 'bootstrap.pw');
  let started: { broker: Broker; issuer: IssuerProcess; pin: string } | undefined;
  const running = (): { broker: Broker; issuer: IssuerProcess; pin: string } => {
    if (!started) throw new Error('exampleMqttsRig: start() first');
    return started;
  };
  return {
    dir: tmp.path,
    admin: { dataDir } as RunningIssuer,
    get pin() {
      return running().pin;
    },
    get broker() {
      return running().broker;
    },
    async start() {
      const pin = await initIssuer(dataDir);
      await applyResources({ dataDir } as RunningIssuer, tmp.path);
      started = { ...(await startExampleBroker(tmp.path, dataDir, pwFile)), pin };
    },
    async stop() {
      await started?.issuer.stop();
      await started?.broker.stop();
      tmp.cleanup();
    },
    mqtts() {
      const { broker } = running();
      return `{ type: mqtt, url: "${broker.url}", timeout: 10s, bootstrap: { url: "${broker.bootstrapUrl}", username: bootstrap, password_file: ${pwFile} } }`;
    },
  };
}
