/**
 * A real HAProxy (Debian's haproxy) in front of several issuers, for the failover tests: config in
 * a temp dir, a free 127.0.0.1 port, TCP mode (TLS passes through to the issuers, so the agent
 * still pins the issuer's root and checks its SPIFFE ID end to end), health checks on each
 * issuer's `/readyz` over TLS, and a stats socket to read which backends are up.
 *
 * Failover settings, and why: `retries` + `option redispatch 1` send a connection whose server
 * refused it (killed issuer, before the check noticed) to another server; `fall 2` takes a server
 * out after two failed checks (~0.5 s; one slow answer on a busy machine is not a dead issuer); `on-marked-down shutdown-sessions` closes the clients still
 * connected to it, so they reconnect (to a survivor) instead of waiting for a timeout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto.js';

export interface HaproxyBackend {
  name: string;
  /** host:port of the issuer's HTTPS listener. */
  address: string;
}

export interface Haproxy {
  /** https://127.0.0.1:<port>, the one issuer URL the agents are given. */
  url: string;
  port: number;
  /** Backend name → HAProxy's status ('UP', 'DOWN', 'UP 1/2', …), from the stats socket. */
  status(): Promise<Record<string, string>>;
  log(): string;
  stop(): Promise<void>;
}

export function requireHaproxy(): void {
  if (spawnSync('haproxy', ['-v']).error)
    throw new Error('haproxy is not installed; install it with: apt-get install -y haproxy (scripts/setup.sh does)');
}

export async function startHaproxy(backends: HaproxyBackend[], o: { checkIntervalMs?: number } = {}): Promise<Haproxy> {
  requireHaproxy();
  const dir = mkdtempSync(join(tmpdir(), 'sigil-haproxy-'));
  const port = await freePort();
  const sock = join(dir, 'stats.sock');
  const inter = o.checkIntervalMs ?? 250;
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      `  stats socket ${sock} mode 600 level admin`,
      '  maxconn 4096',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      // A check answered late on a busy machine is not a dead issuer: fall 2 and a generous check timeout.
      '  timeout check 2s',
      '  retries 3',
      '  option redispatch 1',
      'frontend issuers',
      `  bind 127.0.0.1:${port}`,
      '  default_backend issuers',
      'backend issuers',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      `  default-server check check-ssl verify none inter ${inter} fastinter ${inter} downinter ${inter} fall 2 rise 2 on-marked-down shutdown-sessions`,
      ...backends.map((b) => `  server ${b.name} ${b.address}`),
      '',
    ].join('\n'),
  );
  const check = spawnSync('haproxy', ['-c', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy config refused: ${check.stdout}${check.stderr}`);
  const logs: string[] = [];
  const proc: ChildProcess = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => logs.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));

  const command = (cmd: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const c = createConnection(sock);
      let out = '';
      c.on('data', (d: Buffer) => (out += d.toString()));
      c.on('end', () => resolve(out));
      c.on('error', reject);
      c.end(`${cmd}\n`);
    });
  const status = async (): Promise<Record<string, string>> => {
    // `show stat` CSV: pxname, svname, …, status is column 18 (index 17).
    const rows = (await command('show stat')).split('\n').filter((l) => l.startsWith('issuers,'));
    const out: Record<string, string> = {};
    for (const r of rows) {
      const f = r.split(',');
      if (f[1] !== 'FRONTEND' && f[1] !== 'BACKEND') out[f[1]!] = f[17]!;
    }
    return out;
  };
  // Listening once the stats socket answers.
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await status();
      break;
    } catch (e) {
      if (proc.exitCode !== null) throw new Error(`haproxy exited ${proc.exitCode}: ${logs.join('')}`);
      if (Date.now() > deadline) throw new Error(`haproxy did not start: ${String(e)} ${logs.join('')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    status,
    log: () => logs.join(''),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Poll `status()` until `want` holds (e.g. every backend UP), or fail after `timeoutMs` with the last status. */
export async function waitForStatus(
  h: Haproxy,
  want: (s: Record<string, string>) => boolean,
  timeoutMs = 20_000,
): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, string> = {};
  while (Date.now() < deadline) {
    last = await h.status();
    if (want(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`haproxy backends did not reach the wanted state: ${JSON.stringify(last)}`);
}
