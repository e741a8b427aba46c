import { defineConfig } from 'vitest/config';
import { hangGuardTestOptions } from './test/harness/hang-guard-setup.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real processes on loopback; two workers on a 2-core machine.
    pool: 'forks',
    maxWorkers: 2,
    // Each worker marks the file it runs, for the hang guard (test/harness/hang-guard.ts, the
    // reporter scripts/test.sh adds).
    ...hangGuardTestOptions,
  },
});
