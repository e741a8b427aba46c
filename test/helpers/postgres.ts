/**
 * A real PostgreSQL for tests: initdb in a temp dir, started on a free 127.0.0.1 port as the
 * `postgres` system user (postgres refuses to run as root), plus local socket access for setup.
 * Two ways in over TCP:
 * - TLS client certificates only (the database output tests): a server certificate and client CA
 *   given by the test, pg_hba.conf `hostssl … cert clientcert=verify-full`;
 * - a password (`auth: 'password'`, SCRAM-SHA-256, the store backend tests) or no check at all
 *   (`auth: 'trust'`), over plain loopback TCP.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto.js';

const INSTALL =
  'PostgreSQL is not installed; install it with: apt-get install -y postgresql postgresql-client (scripts/setup.sh does)';

export function pgBin(name: string): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin', name)))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(INSTALL);
  return join(base, versions[0]!, 'bin', name);
}

export function postgresUser(): { uid: number; gid: number } {
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error(`no postgres system user; ${INSTALL}`);
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

export function requirePostgres(): void {
  pgBin('initdb');
  if (spawnSync('psql', ['--version']).error) throw new Error(INSTALL);
  if (process.getuid?.() !== 0)
    throw new Error('the PostgreSQL tests start postgres as the postgres user and need root for that');
  postgresUser();
}

export interface Postgres {
  port: number;
  /** The postmaster's pid (its children are the backends; the benches read their CPU from /proc). */
  readonly pid: number;
  /** The data directory and the Unix socket directory (owned by the postgres user); for a standby's pg_basebackup. */
  readonly dataDir: string;
  readonly socketDir: string;
  /** Password of the `postgres` role over TCP (auth 'password'). */
  password?: string;
  /** postgres://postgres[:password]@127.0.0.1:<port>/<database> for auth 'password' or 'trust'. */
  url(database?: string): string;
  /** A new, empty database (CREATE DATABASE); returns its name. */
  createDatabase(name: string): string;
  /** Run SQL as the superuser over the local socket (in `database`, default postgres). */
  admin(sql: string, database?: string): string;
  log(): string;
  /** Stop (fast shutdown) and start again on the same data and port; `whileDown` runs in between. */
  restart(o?: { whileDown?: () => Promise<void> }): Promise<void>;
  stop(): Promise<void>;
}

/** TLS with client certificates (the original harness). */
export interface PostgresTlsOptions {
  serverCertPem: string;
  serverKeyPem: string;
  clientCaPem: string;
}

/** Plain loopback TCP with a password (SCRAM) or without any check. */
export interface PostgresLoopbackOptions {
  auth: 'password' | 'trust';
  /** Default: random. */
  password?: string;
  /** Extra postgresql.conf lines (e.g. max_connections). */
  conf?: string[];
}

export async function startPostgres(o: PostgresTlsOptions | PostgresLoopbackOptions): Promise<Postgres> {
  requirePostgres();
  const { uid, gid } = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), 'sigil-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  chownSync(dir, uid, gid);
  chownSync(sock, uid, gid);
  const asPostgres = { uid, gid, env: { ...process.env, HOME: dir, LC_ALL: 'C' } };
  execFileSync(pgBin('initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'], {
    ...asPostgres,
    stdio: 'ignore',
  });
  const put = (name: string, text: string, mode: number): string => {
    const f = join(data, name);
    writeFileSync(f, text, { mode });
    chownSync(f, uid, gid);
    chmodSync(f, mode);
    return f;
  };
  const tls = 'serverCertPem' in o;
  if (tls) {
    put('server.crt', o.serverCertPem, 0o644);
    put('server.key', o.serverKeyPem, 0o600);
    put('client-ca.crt', o.clientCaPem, 0o644);
  }
  const port = await freePort();
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      '',
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      `unix_socket_directories = '${sock}'`,
      ...(tls
        ? ['ssl = on', "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'client-ca.crt'"]
        : []),
      'log_connections = on',
      'fsync = off',
      ...(tls ? [] : ['synchronous_commit = off', 'full_page_writes = off', ...(o.conf ?? [])]),
      '',
    ].join('\n'),
  );
  const password = !tls && o.auth === 'password' ? (o.password ?? randomBytes(12).toString('hex')) : undefined;
  put(
    'pg_hba.conf',
    tls
      ? // Only TLS client certificates over TCP; the CN must be the role (clientcert=verify-full).
        'local all postgres trust\nhostssl all all 127.0.0.1/32 cert clientcert=verify-full\n'
      : `local all postgres trust\nhost all all 127.0.0.1/32 ${password ? 'scram-sha-256' : 'trust'}\n`,
    0o600,
  );

  const logs: string[] = [];
  /** Start the server on the data directory; resolves once it accepts connections. */
  const launch = async (): Promise<ChildProcess> => {
    const proc: ChildProcess = spawn(pgBin('postgres'), ['-D', data], {
      ...asPostgres,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const mark = logs.length;
    proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`postgres did not start: ${logs.join('')}`)), 30_000);
      const check = (): void => {
        if (/database system is ready to accept connections/.test(logs.slice(mark).join(''))) {
          clearTimeout(t);
          resolve();
        }
      };
      proc.stderr!.on('data', check);
      proc.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`postgres exited ${code}: ${logs.join('')}`));
      });
    });
    return proc;
  };
  /** Fast shutdown (SIGINT: open transactions roll back, sessions are ended). */
  const shutdown = async (p: ChildProcess): Promise<void> => {
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGINT');
      await exited;
    }
  };
  let proc = await launch();
  const admin = (sql: string, database = 'postgres'): string =>
    execFileSync(
      'psql',
      ['-h', sock, '-p', String(port), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-Atc', sql],
      { ...asPostgres, encoding: 'utf8' },
    );
  if (password) admin(`ALTER ROLE postgres PASSWORD '${password}'`);
  return {
    port,
    get pid() {
      return proc.pid!;
    },
    dataDir: data,
    socketDir: sock,
    ...(password ? { password } : {}),
    url: (database = 'postgres') =>
      `postgres://postgres${password ? `:${password}` : ''}@127.0.0.1:${port}/${database}`,
    createDatabase: (name) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new TypeError(`not a plain database name: ${name}`);
      admin(`CREATE DATABASE ${name}`);
      return name;
    },
    admin,
    log: () => logs.join(''),
    restart: async (o = {}) => {
      await shutdown(proc);
      await o.whileDown?.();
      proc = await launch();
    },
    stop: async () => {
      await shutdown(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run psql with a libpq connection string; resolves with the exit code and output. */
export function psql(conninfo: string, sql: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('psql', [conninfo, '-v', 'ON_ERROR_STOP=1', '-Atc', sql], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
