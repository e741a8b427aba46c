/**
 * A streaming standby of a test PostgreSQL (./postgres.ts), for the failover e2e test (issue #15):
 * `pg_basebackup -R` from the primary into a temp dir (the standby's recovery settings written
 * by pg_basebackup itself: standby.signal + primary_conninfo over the primary's Unix socket),
 * started on another free 127.0.0.1 port as a hot standby (read-only connections), and
 * `promote()`d with `pg_ctl promote` once the primary is gone.
 *
 * The roles and passwords are the primary's (replicated), so the primary's URL with this port
 * logs in the same way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto.js';
import { pgBin, postgresUser, type Postgres } from './postgres.js';

export interface Standby {
  port: number;
  /** The primary's URL form, on this server's port. */
  url(database?: string): string;
  /** Run SQL as the superuser over the standby's Unix socket. */
  admin(sql: string, database?: string): string;
  /** `pg_ctl promote -w`: resolves once the standby accepts writes; returns how long the promotion took (ms). */
  promote(): number;
  log(): string;
  stop(): Promise<void>;
}

export async function startStandby(primary: Postgres): Promise<Standby> {
  const { uid, gid } = postgresUser();
  // The primary lets its superuser replicate over its Unix socket (pg_basebackup, then the standby's walreceiver).
  appendFileSync(join(primary.dataDir, 'pg_hba.conf'), 'local replication postgres trust\n');
  primary.admin('SELECT pg_reload_conf()');

  const dir = mkdtempSync(join(tmpdir(), 'sigil-pg-standby-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  chownSync(dir, uid, gid);
  chownSync(sock, uid, gid);
  const asPostgres = { uid, gid, env: { ...process.env, HOME: dir, LC_ALL: 'C' } };
  execFileSync(
    pgBin('pg_basebackup'),
    [
      '-h',
      primary.socketDir,
      '-p',
      String(primary.port),
      '-U',
      'postgres',
      '-D',
      data,
      '-R',
      '-X',
      'stream',
      '--no-sync',
      '-c',
      'fast',
    ],
    { ...asPostgres, stdio: 'ignore' },
  );
  // (-c fast: the backup's checkpoint now, not spread over checkpoint_timeout.)
  const port = await freePort();
  // After the copied postgresql.conf: the last setting wins.
  appendFileSync(
    join(data, 'postgresql.conf'),
    `\nport = ${port}\nunix_socket_directories = '${sock}'\nhot_standby = on\n`,
  );

  const logs: string[] = [];
  const proc: ChildProcess = spawn(pgBin('postgres'), ['-D', data], {
    ...asPostgres,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  proc.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`standby did not start: ${logs.join('')}`)), 30_000);
    const check = (): void => {
      if (/ready to accept read-only connections/.test(logs.join(''))) {
        clearTimeout(t);
        resolve();
      }
    };
    proc.stderr!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`standby exited ${code}: ${logs.join('')}`));
    });
  });
  const primaryUrl = new URL(primary.url());
  return {
    port,
    url: (database = 'postgres') => {
      const u = new URL(primaryUrl);
      u.port = String(port);
      u.pathname = `/${database}`;
      return u.toString();
    },
    admin: (sql, database = 'postgres') =>
      execFileSync(
        'psql',
        ['-h', sock, '-p', String(port), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-Atc', sql],
        { ...asPostgres, encoding: 'utf8' },
      ),
    promote: () => {
      const t0 = performance.now();
      execFileSync(pgBin('pg_ctl'), ['promote', '-w', '-t', '30', '-D', data], { ...asPostgres, stdio: 'ignore' });
      return performance.now() - t0;
    },
    log: () => logs.join(''),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGINT');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
