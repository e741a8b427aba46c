import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { heapGrowingGiven } from '../../../src/cli/issuer-heap.js';

describe('issuer heap growing factor', () => {
  it("yields to node's own flag, in either spelling, with or without a value", () => {
    expect(heapGrowingGiven([])).toBe(false);
    expect(heapGrowingGiven(['--import', 'x.mjs', '--max-old-space-size=512'])).toBe(false);
    expect(heapGrowingGiven(['--heap-growing-percent=0'])).toBe(true);
    expect(heapGrowingGiven(['--heap_growing_percent=50'])).toBe(true);
    expect(heapGrowingGiven(['--heap-growing-percent'])).toBe(true);
    expect(heapGrowingGiven(['--heap-growing-percentage=5'])).toBe(false);
  });

  it('makes major GCs come more often in a process that keeps promoting garbage', () => {
    // The same allocation pattern (objects that live long enough to be promoted, then die), with and
    // without the factor set from code as tuneIssuerHeap sets it: count the mark-compacts.
    const script = (tune: boolean): string => `
      ${tune ? "require('node:v8').setFlagsFromString('--heap-growing-percent=10');" : ''}
      const { PerformanceObserver, constants: c } = require('node:perf_hooks');
      const major = [c.NODE_PERFORMANCE_GC_MAJOR, c.NODE_PERFORMANCE_GC_INCREMENTAL];
      let majors = 0;
      new PerformanceObserver((l) => { for (const e of l.getEntries()) if (major.includes(e.detail.kind)) majors++; }).observe({ entryTypes: ['gc'] });
      const live = [];
      for (let i = 0; i < 400000; i++) {
        live.push({ i, pad: new Array(64).fill(i) });
        if (live.length > 20000) live.splice(0, 1000);
      }
      setTimeout(() => console.log(majors), 50);`;
    const majors = (tune: boolean): number =>
      Number(execFileSync(process.execPath, ['-e', script(tune)], { encoding: 'utf8' }).trim());
    expect(majors(true)).toBeGreaterThan(majors(false));
  });
});
