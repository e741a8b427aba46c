/**
 * cfssl (`cfssl serve`, CloudFlare's PKI toolkit; Debian's golang-cfssl) as a side-by-side peer
 * CA server: started on a free 127.0.0.1 port with a throwaway P-256 CA and TLS, driven over
 * HTTPS keep-alive with precomputed P-256 CSRs on /api/v1/cfssl/sign, its server CPU per
 * certificate read from /proc. It does less than a Sigil renewal — one CSR verify and one sign,
 * no authentication of the requester, no database, no audit — so it is a reference point for
 * "an HTTPS CA endpoint on this machine", not a like-for-like competitor.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http1Connection } from './http1.js';
import { summarize, type LatencySummary } from './percentile.js';
import { processCpuSeconds } from './proc-cpu.js';

/** `cfssl version`'s first line, or undefined when cfssl is not installed. */
export function cfsslVersion(): string | undefined {
  const r = spawnSync('cfssl', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout
    .split('\n')[0]
    ?.replace(/^Version:\s*/, '')
    .trim();
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

export interface CfsslServer {
  url: string;
  port: number;
  pid: number;
  /** PEM of the throwaway CA (it also issued the server's TLS certificate, for 127.0.0.1). */
  caPem: string;
  stop(): Promise<void>;
}

/**
 * Start `cfssl serve` with a fresh P-256 CA in a temp dir. `goMaxProcs`: GOMAXPROCS for the
 * server (1 = one core, the same budget as the single-threaded issuer).
 */
export async function startCfssl(opts: { goMaxProcs?: number } = {}): Promise<CfsslServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-cfssl-'));
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl(
      [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        'ca-key.pem',
        '-out',
        'ca.pem',
        '-subj',
        '/CN=bench cfssl CA',
        '-days',
        '1',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    openssl(['req', '-new', ...ec, '-keyout', 'tls-key.pem', '-out', 'tls.csr', '-subj', '/CN=127.0.0.1'], dir);
    writeFileSync(join(dir, 'tls.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl(
      [
        'x509',
        '-req',
        '-in',
        'tls.csr',
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca-key.pem',
        '-CAcreateserial',
        '-days',
        '1',
        '-out',
        'tls.pem',
        '-extfile',
        'tls.ext',
      ],
      dir,
    );
    // Client certificates valid for an hour, like a short-lived workload identity.
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({ signing: { default: { expiry: '1h', usages: ['digital signature', 'client auth'] } } }),
    );
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const port = await freePort();
  const child: ChildProcess = spawn(
    'cfssl',
    [
      'serve',
      '-address',
      '127.0.0.1',
      '-port',
      String(port),
      '-ca',
      'ca.pem',
      '-ca-key',
      'ca-key.pem',
      '-config',
      'config.json',
      '-tls-cert',
      'tls.pem',
      '-tls-key',
      'tls-key.pem',
      '-loglevel',
      '2',
    ],
    {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...(opts.goMaxProcs ? { GOMAXPROCS: String(opts.goMaxProcs) } : {}) },
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const caPem = readFileSync(join(dir, 'ca.pem'), 'utf8');
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready once a TLS request gets an HTTP answer (the port opens before the handlers are in).
  const probe = new Http1Connection({ host: '127.0.0.1', port, ca: caPem, timeoutMs: 2000 });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`cfssl serve exited with code ${child.exitCode}: ${stderr}`);
    }
    try {
      await probe.request('GET', '/api/v1/cfssl/health');
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`cfssl serve did not answer within 15 s: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  probe.close();
  return { url: `https://127.0.0.1:${port}`, port, pid: child.pid!, caPem, stop };
}

export interface CfsslRun {
  certs: number;
  errors: number;
  seconds: number;
  certsPerS: number;
  latency: LatencySummary;
  /** cfssl's CPU per certificate (whole process) and its share of a core over the window. */
  serverCpuMsPerCert: number;
  serverCpuPct: number;
  /** This process's CPU per certificate (TLS client + JSON). */
  clientCpuMsPerCert: number;
  clientCpuPct: number;
}

/**
 * Closed loop: `connections` keep-alive connections each send their next CSR as soon as the
 * last certificate arrived, for `seconds`. Every answer must be `success: true` with a PEM
 * certificate; anything else counts as an error.
 */
export async function driveCfssl(
  server: CfsslServer,
  csrPems: readonly string[],
  opts: { connections: number; seconds: number },
): Promise<CfsslRun> {
  const bodies = csrPems.map((pem) => JSON.stringify({ certificate_request: pem }));
  const conns = Array.from(
    { length: opts.connections },
    () => new Http1Connection({ host: '127.0.0.1', port: server.port, ca: server.caPem }),
  );
  const latencies: number[] = [];
  let errors = 0;
  let k = 0;
  const one = async (c: Http1Connection): Promise<boolean> => {
    const t0 = performance.now();
    try {
      const r = await c.request('POST', '/api/v1/cfssl/sign', bodies[k++ % bodies.length]!);
      const j = JSON.parse(r.body.toString('utf8')) as { success?: boolean; result?: { certificate?: string } };
      if (r.status === 200 && j.success === true && j.result?.certificate?.startsWith('-----BEGIN CERTIFICATE')) {
        latencies.push(performance.now() - t0);
        return true;
      }
    } catch {
      // counted below
    }
    errors++;
    return false;
  };
  await Promise.all(conns.map(one)); // connect + warm up, untimed
  latencies.length = 0;
  errors = 0;
  const cpu0 = { server: processCpuSeconds(server.pid), client: process.cpuUsage() };
  const start = performance.now();
  const deadline = start + opts.seconds * 1000;
  await Promise.all(
    conns.map(async (c) => {
      while (performance.now() < deadline) await one(c);
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const serverCpuS = (processCpuSeconds(server.pid) ?? NaN) - (cpu0.server ?? NaN);
  const cu = process.cpuUsage(cpu0.client);
  const clientCpuS = (cu.user + cu.system) / 1e6;
  for (const c of conns) c.close();
  const certs = latencies.length;
  return {
    certs,
    errors,
    seconds,
    certsPerS: certs / seconds,
    latency: summarize(latencies),
    serverCpuMsPerCert: (1000 * serverCpuS) / certs,
    serverCpuPct: (100 * serverCpuS) / seconds,
    clientCpuMsPerCert: (1000 * clientCpuS) / certs,
    clientCpuPct: (100 * clientCpuS) / seconds,
  };
}
