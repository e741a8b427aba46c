import { describe, expect, it } from 'vitest';
import { whatLimited, type CpuShares } from '../../../bench/lib/limit.js';

const idle: CpuShares = {
  serverMainThread: 30,
  serverProcess: 35,
  generatorBusiestThread: 20,
  generatorProcess: 25,
  other: 5,
  machineBusy: 33,
  cores: 2,
};

describe('whatLimited', () => {
  it('names the server when its event loop is saturated, even if the machine is busy too', () => {
    expect(whatLimited({ ...idle, serverMainThread: 97, machineBusy: 99 }, 'closed')).toMatch(/^the server: .*97%/);
  });

  it('names the load generator when one of its threads is saturated and the server is not', () => {
    expect(whatLimited({ ...idle, generatorBusiestThread: 95 }, 'closed')).toMatch(/^the load generator.*--workers/);
  });

  it('names the machine, with each share, when every core is busy but no single thread is saturated', () => {
    const s = whatLimited({ ...idle, serverProcess: 60, generatorProcess: 40, other: 100, machineBusy: 100 }, 'closed');
    expect(s).toMatch(/^the machine: all 2 cores busy/);
    expect(s).toContain('other processes 100%');
  });

  it('says nothing was CPU-bound otherwise, in the words of the mode', () => {
    expect(whatLimited(idle, 'closed')).toMatch(/latency-bound/);
    expect(whatLimited(idle, 'open')).toMatch(/offered rate is below/);
  });

  it('treats unmeasured shares (NaN) as not saturated', () => {
    const s = whatLimited({ ...idle, serverMainThread: NaN, machineBusy: NaN }, 'closed');
    expect(s).toMatch(/latency-bound/);
  });
});
