import { describe, expect, it } from 'vitest';
import { WorkerPool } from '../../../bench/lib/worker-pool.js';

describe('WorkerPool (TypeScript workers through ts-worker.mjs)', () => {
  it('gives each worker its own data, answers in worker order, and carries a worker error back as a rejection', async () => {
    const pool = WorkerPool.start<number, { name: string; double: number }>(
      new URL('./fixtures/echo-worker.ts', import.meta.url),
      3,
      (i) => ({ name: `w${i}` }),
    );
    try {
      expect(pool.size).toBe(3);
      expect(await pool.all((i) => i + 1)).toEqual([
        { name: 'w0', double: 2 },
        { name: 'w1', double: 4 },
        { name: 'w2', double: 6 },
      ]);
      await expect(pool.call(1, -5)).rejects.toThrow(/negative: -5/);
      // The worker survives a failed request.
      expect(await pool.call(1, 10)).toEqual({ name: 'w1', double: 20 });
    } finally {
      await pool.close();
    }
  });
});
