/**
 * What limited a load run, from the CPU each side used over the window. A bench that reports
 * operations/s without this measures whichever side ran out first — often the load generator.
 */

export interface CpuShares {
  /** Percent of one core over the window (100 = one core fully busy). */
  serverMainThread: number;
  serverProcess: number;
  /** The busiest single thread of the load generator, and the generator process as a whole. */
  generatorBusiestThread: number;
  generatorProcess: number;
  /** Everything else on the machine (busy time not accounted by the two processes). */
  other: number;
  /** Busy time of the whole machine, percent of ALL cores (100 = every core busy). */
  machineBusy: number;
  cores: number;
}

/** A core counts as saturated from this share on (scheduling and /proc's 10 ms ticks blur 100%). */
export const SATURATED_PCT = 90;

export function whatLimited(s: CpuShares, mode: 'closed' | 'open'): string {
  if (s.serverMainThread >= SATURATED_PCT)
    return `the server: its event-loop thread used ${s.serverMainThread.toFixed(0)}% of a core (saturated)`;
  if (s.generatorBusiestThread >= SATURATED_PCT)
    return `the load generator: one of its threads used ${s.generatorBusiestThread.toFixed(0)}% of a core (add --workers)`;
  if (s.machineBusy >= SATURATED_PCT)
    return (
      `the machine: all ${s.cores} cores busy (server ${s.serverProcess.toFixed(0)}%, load generator ` +
      `${s.generatorProcess.toFixed(0)}%, other processes ${s.other.toFixed(0)}%), so the server could not get a full core`
    );
  return mode === 'open'
    ? 'nothing CPU-bound: the offered rate is below what the server can take'
    : 'nothing CPU-bound: latency-bound (more agents would add load)';
}
