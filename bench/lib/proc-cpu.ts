/**
 * CPU time from Linux /proc (proc(5)), for processes the bench did not start in-process (the
 * issuer, cfssl) and for single threads (a worker's own core, the issuer's event loop).
 *
 * CPU time per operation is the bench's stable figure: on a shared machine other jobs depress
 * operations/s, but not the CPU each operation costs. Wall clock only says who was starved.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for the /proc counters: USER_HZ, 100 on every Linux architecture Node runs on. */
export const CLK_TCK = 100;

export interface ProcStat {
  /** `comm`: the executable or thread name, as the kernel stores it (at most 15 bytes). */
  comm: string;
  state: string;
  /** User and system CPU time, in clock ticks (fields 14 and 15). */
  utime: number;
  stime: number;
  /** utime + stime in seconds. */
  cpuSeconds: number;
}

/**
 * Parse /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat. `comm` may itself contain spaces and
 * parentheses, so the fields are counted from the LAST ")" (what proc(5) recommends).
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error('not a /proc stat line: no "(comm)"');
  const f = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // After "(comm) ": state is field 3 of proc(5), so utime (14) and stime (15) are at 11 and 12.
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('not a /proc stat line: no utime/stime');
  return { comm: text.slice(open + 1, close), state: f[0]!, utime, stime, cpuSeconds: (utime + stime) / CLK_TCK };
}

export interface MachineTicks {
  /** Cores counted in /proc/stat ("cpuN" lines). */
  cores: number;
  /** Non-idle ticks over all cores: user nice system irq softirq steal (guest is inside user). */
  busy: number;
  /** busy + idle + iowait. */
  total: number;
}

/** Parse /proc/stat: the aggregate "cpu" line and the number of "cpuN" lines. */
export function parseMachineStat(text: string): MachineTicks {
  const lines = text.split('\n');
  const agg = lines.find((l) => /^cpu\s/.test(l));
  if (!agg) throw new Error('not /proc/stat: no aggregate "cpu" line');
  const v = agg.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const busy = user + nice + system + irq + softirq + steal;
  return { cores: lines.filter((l) => /^cpu\d+\s/.test(l)).length, busy, total: busy + idle + iowait };
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** CPU seconds of a whole process (all its threads), or undefined once it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  const t = read(`/proc/${pid}/stat`);
  return t === undefined ? undefined : parseProcStat(t).cpuSeconds;
}

/** CPU seconds of one thread of a process; a process's main thread has tid = pid (its event loop for Node). */
export function threadCpuSeconds(pid: number, tid: number): number | undefined {
  const t = read(`/proc/${pid}/task/${tid}/stat`);
  return t === undefined ? undefined : parseProcStat(t).cpuSeconds;
}

/** CPU seconds of the calling thread (a worker_thread reads its own core this way). */
export function ownThreadCpuSeconds(): number | undefined {
  const t = read('/proc/thread-self/stat');
  return t === undefined ? undefined : parseProcStat(t).cpuSeconds;
}

/** CPU seconds and name of every thread of a process (tid → stat), e.g. to see where a process's CPU went. */
export function threadsOf(pid: number | 'self'): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const t = read(`/proc/${pid}/task/${tid}/stat`);
    if (t !== undefined) out.set(Number(tid), parseProcStat(t));
  }
  return out;
}

/** Busy and total ticks of the whole machine, or undefined where /proc/stat is missing. */
export function machineTicks(): MachineTicks | undefined {
  const t = read('/proc/stat');
  return t === undefined ? undefined : parseMachineStat(t);
}
