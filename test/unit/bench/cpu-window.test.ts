import { describe, expect, it } from 'vitest';
import { cpuWindow, type CpuSnapshot } from '../../../bench/lib/cpu-window.js';
import type { ProcStat } from '../../../bench/lib/proc-cpu.js';

const stat = (cpuSeconds: number): ProcStat => ({ comm: 'node', state: 'S', utime: 0, stime: 0, cpuSeconds });

function snap(
  atMs: number,
  server: number,
  serverMain: number,
  generator: number,
  threads: [number, number][],
  busy: number,
  total: number,
): CpuSnapshot {
  return {
    atMs,
    server,
    serverMain,
    generator,
    generatorThreads: new Map(threads.map(([tid, s]) => [tid, stat(s)])),
    machine: { cores: 2, busy, total },
  };
}

describe('cpuWindow', () => {
  it('turns two snapshots into shares of one core, splits the generator by thread and leaves the rest to other processes', () => {
    const workerTid = 777_001;
    const a = snap(
      0,
      10,
      8,
      5,
      [
        [process.pid, 1],
        [workerTid, 2],
        [777_002, 0.5],
      ],
      1000,
      5000,
    );
    // 2 s later: server +1.8 s (main thread +1.6), generator +0.6 s (worker +0.5, main +0.02, other +0.08),
    // machine +360 ticks busy of 400 (= 3.6 s busy over 2 cores × 2 s).
    const b = snap(
      2000,
      11.8,
      9.6,
      5.6,
      [
        [process.pid, 1.02],
        [workerTid, 2.5],
        [777_002, 0.58],
      ],
      1360,
      5400,
    );
    const w = cpuWindow(a, b, [0.5], new Map([[workerTid, 'worker 0']]));
    expect(w.seconds).toBe(2);
    expect(w.serverProcess).toBeCloseTo(90, 6);
    expect(w.serverMainThread).toBeCloseTo(80, 6);
    expect(w.generatorProcess).toBeCloseTo(30, 6);
    expect(w.generatorBusiestThread).toBeCloseTo(25, 6);
    expect(w.machineBusy).toBeCloseTo(90, 6);
    // 3.6 s busy − 1.8 s server − 0.6 s generator = 1.2 s over 2 s
    expect(w.other).toBeCloseTo(60, 6);
    expect(w.generatorThreads['worker 0']).toBeCloseTo(25, 6);
    expect(w.generatorThreads.main).toBeCloseTo(1, 6);
    expect(w.generatorThreads['other threads']).toBeCloseTo(4, 6);
  });

  it('reports NaN, not a made-up figure, when the server process was gone at either end', () => {
    const a = snap(0, 10, 8, 5, [], 0, 100);
    const b = { ...snap(1000, 0, 0, 5.1, [], 50, 200), server: undefined, serverMain: undefined };
    const w = cpuWindow(a, b, []);
    expect(w.serverProcess).toBeNaN();
    expect(w.serverMainThread).toBeNaN();
    expect(w.generatorBusiestThread).toBeNaN();
  });
});
