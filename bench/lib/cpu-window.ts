/**
 * CPU used over a timed window by the server process (all threads, and its main thread — a
 * Node server's event loop), by this load-generator process (all threads: main, workers, libuv,
 * GC) and by the rest of the machine, as shares of one core; input to {@link whatLimited}.
 */
import { whatLimited, type CpuShares } from './limit.js';
import {
  machineTicks,
  processCpuSeconds,
  threadCpuSeconds,
  threadsOf,
  type MachineTicks,
  type ProcStat,
} from './proc-cpu.js';

export interface CpuSnapshot {
  atMs: number;
  server: number | undefined;
  serverMain: number | undefined;
  generator: number;
  generatorThreads: Map<number, ProcStat>;
  machine: MachineTicks | undefined;
}

export function cpuSnapshot(serverPid: number): CpuSnapshot {
  const u = process.cpuUsage();
  return {
    atMs: performance.now(),
    server: processCpuSeconds(serverPid),
    serverMain: threadCpuSeconds(serverPid, serverPid),
    generator: (u.user + u.system) / 1e6,
    generatorThreads: threadsOf('self'),
    machine: machineTicks(),
  };
}

export interface CpuWindow extends CpuShares {
  seconds: number;
  serverCpuS: number;
  generatorCpuS: number;
  /** This process's threads (% of a core): "main", the labelled ones, and "other threads" (GC, libuv, loaders). */
  generatorThreads: Record<string, number>;
}

/** Shares between two snapshots; `threadCpuS`: CPU seconds of each generator worker thread. */
export function cpuWindow(
  a: CpuSnapshot,
  b: CpuSnapshot,
  threadCpuS: readonly number[],
  threadLabels: ReadonlyMap<number, string> = new Map(),
): CpuWindow {
  const seconds = (b.atMs - a.atMs) / 1000;
  const pct = (s: number): number => (100 * s) / seconds;
  const serverCpuS = (b.server ?? NaN) - (a.server ?? NaN);
  const generatorCpuS = b.generator - a.generator;
  let machineBusy = NaN;
  let busyS = NaN;
  let cores = NaN;
  if (a.machine && b.machine) {
    const busy = b.machine.busy - a.machine.busy;
    machineBusy = (100 * busy) / (b.machine.total - a.machine.total);
    busyS = busy / 100;
    cores = b.machine.cores;
  }
  const byName: Record<string, number> = {};
  for (const [tid, t] of b.generatorThreads) {
    const d = t.cpuSeconds - (a.generatorThreads.get(tid)?.cpuSeconds ?? 0);
    const name = tid === process.pid ? 'main' : (threadLabels.get(tid) ?? 'other threads');
    if (d > 0) byName[name] = (byName[name] ?? 0) + pct(d);
  }
  return {
    seconds,
    generatorThreads: byName,
    serverCpuS,
    generatorCpuS,
    serverProcess: pct(serverCpuS),
    serverMainThread: pct((b.serverMain ?? NaN) - (a.serverMain ?? NaN)),
    generatorProcess: pct(generatorCpuS),
    generatorBusiestThread: threadCpuS.length ? pct(Math.max(...threadCpuS)) : NaN,
    other: Math.max(0, pct(busyS - serverCpuS - generatorCpuS)),
    machineBusy,
    cores,
  };
}

export { whatLimited };
