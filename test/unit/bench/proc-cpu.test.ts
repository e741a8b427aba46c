import { describe, expect, it } from 'vitest';
import {
  CLK_TCK,
  machineTicks,
  ownThreadCpuSeconds,
  parseMachineStat,
  parseProcStat,
  processCpuSeconds,
  threadCpuSeconds,
  threadsOf,
} from '../../../bench/lib/proc-cpu.js';

// proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime …
const line = (comm: string, utime: number, stime: number): string =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194304 100 0 0 0 ${utime} ${stime} 0 0 20 0 11 0 123 456 789\n`;

describe('parseProcStat', () => {
  it('reads utime and stime (fields 14 and 15) and converts ticks to seconds', () => {
    const s = parseProcStat(line('node', 250, 50));
    expect(s).toMatchObject({ comm: 'node', state: 'S', utime: 250, stime: 50 });
    expect(s.cpuSeconds).toBe(300 / CLK_TCK);
  });

  it('counts fields from the last ")" so a name with spaces and parentheses cannot shift them', () => {
    const s = parseProcStat(line('evil) 1 2 (x', 7, 3));
    expect(s.comm).toBe('evil) 1 2 (x');
    expect(s.utime).toBe(7);
    expect(s.stime).toBe(3);
  });

  it('refuses text that is not a stat line', () => {
    expect(() => parseProcStat('hello')).toThrow(/comm/);
    expect(() => parseProcStat('1 (x) S 1 2')).toThrow(/utime/);
  });
});

describe('parseMachineStat', () => {
  it('sums the busy columns of the aggregate line and counts the cores', () => {
    const text = [
      'cpu  100 5 50 1000 20 3 2 10 7 0',
      'cpu0 50 2 25 500 10 1 1 5 0 0',
      'cpu1 50 3 25 500 10 2 1 5 0 0',
      'intr 12345',
    ].join('\n');
    // busy = user 100 + nice 5 + system 50 + irq 3 + softirq 2 + steal 10 (guest 7 is already in user)
    expect(parseMachineStat(text)).toEqual({ cores: 2, busy: 170, total: 170 + 1000 + 20 });
  });

  it('refuses text without the aggregate cpu line', () => {
    expect(() => parseMachineStat('cpu0 1 2 3 4')).toThrow(/aggregate/);
  });
});

describe('the /proc readers on this machine', () => {
  it('see this process, its main thread and the calling thread, and a gone pid as undefined', () => {
    expect(processCpuSeconds(process.pid)).toBeGreaterThan(0);
    expect(threadCpuSeconds(process.pid, process.pid)).toBeGreaterThanOrEqual(0);
    expect(ownThreadCpuSeconds()).toBeGreaterThanOrEqual(0);
    expect(threadsOf('self').has(process.pid)).toBe(true);
    expect(processCpuSeconds(2 ** 22 + 12345)).toBeUndefined();
    expect(machineTicks()!.cores).toBeGreaterThan(0);
  });
});
