/**
 * `--store postgres` of the renewal bench (issue #15): a throwaway PostgreSQL (the tests' harness,
 * test/helpers/postgres.ts: initdb in a temp dir, loopback, password auth, fsync off) and what
 * it costs per renewal: the CPU of every process of that server (postmaster, backends, WAL
 * writer, checkpointer, …) from /proc, and its committed transactions (pg_stat_database).
 *
 * fsync is off in that harness: the figures are the database's CPU, not a disk's latency (a
 * production primary with fsync on pays a WAL flush per commit, shared by group commit).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { startPostgres, type Postgres } from '../../test/helpers/postgres.js';
import { parseProcStat, processCpuSeconds } from './proc-cpu.js';

export interface BenchPostgres {
  url: string;
  pg: Postgres;
  /** CPU seconds per pid of the server's processes, now. */
  cpu(): Map<number, number>;
  /** Transactions committed in the bench database so far. */
  commits(): number;
  stop(): Promise<void>;
}

export async function startBenchPostgres(): Promise<BenchPostgres> {
  const pg = await startPostgres({ auth: 'password', conf: ['max_connections = 200'] });
  const db = pg.createDatabase('sigil_bench');
  return {
    url: pg.url(db),
    pg,
    cpu: () => serverCpu(pg.pid),
    commits: () => Number(pg.admin(`SELECT xact_commit FROM pg_stat_database WHERE datname = '${db}'`).trim()),
    stop: () => pg.stop(),
  };
}

/** The postmaster and its direct children (every PostgreSQL process is one), by pid. */
function serverCpu(postmaster: number): Map<number, number> {
  const out = new Map<number, number>();
  const own = processCpuSeconds(postmaster);
  if (own !== undefined) out.set(postmaster, own);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      // ppid is the field after the state, counted from the last ")" like parseProcStat does.
      const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === postmaster) out.set(Number(name), parseProcStat(text).cpuSeconds);
    } catch {
      // exited between readdir and read
    }
  }
  return out;
}

/** CPU seconds used between two `cpu()` readings (a process that started in between counts from 0). */
export function cpuBetween(a: Map<number, number>, b: Map<number, number>): number {
  let s = 0;
  for (const [pid, t] of b) s += t - (a.get(pid) ?? 0);
  return s;
}
