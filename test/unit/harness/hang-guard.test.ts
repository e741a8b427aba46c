// The hang guard (test/harness/hang-guard.ts) on a real vitest run of two files, one of which
// blocks its worker's event loop for good after starting a child process: vitest's own timeouts
// are timers in that worker and never fire, so without the guard the run would never end.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nestedVitestEnv, spawnNestedVitest } from '../../helpers/nested-vitest.js';

const repo = path.resolve(import.meta.dirname, '../../..');
const fixtures = path.join(repo, 'test/fixtures/hang-guard');
const dir = mkdtempSync(path.join(os.tmpdir(), 'sigil-hang-guard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hangLog = path.join(dir, 'hang-guard.log');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child whose parent died waits as a zombie until init reaps it.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('hang guard', () => {
  it('names the hung file, its test and its process tree, kills the tree, and lets the run end failed', async () => {
    const started = Date.now();
    const run = spawnNestedVitest(
      fixtures,
      ['--reporter=default', `--reporter=${path.join(repo, 'test/harness/hang-guard.ts')}`],
      {
        cwd: dir,
        env: nestedVitestEnv({ SIGIL_TEST_HANG_MS: '2000', CI: 'true', SIGIL_TEST_HANG_LOG: hangLog }),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // its own process group, so a run the guard failed to end can be ended here
      },
    );
    const stuck = setTimeout(() => process.kill(-run.pid!, 'SIGKILL'), 40_000);
    let out = '';
    run.stdout!.on('data', (d: Buffer) => (out += d));
    run.stderr!.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((resolve) => run.on('close', resolve));
    clearTimeout(stuck);
    const plain = out.replace(/\x1b\[[0-9;]*m/g, '');

    expect(code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(plain).toMatch(/hang guard: \S*blocked\.fixture\.ts made no progress for \d+ s/);
    expect(plain).toContain('last test started in the worker: "blocked.fixture.ts > blocks the event loop"');
    const sleeper = /^\s+(\d+) \S+ \S+ sleep 1000$/m.exec(plain);
    expect(sleeper, plain).not.toBeNull();
    expect(plain).toMatch(/killed 2 process\(es\)/);
    expect(alive(Number(sleeper![1]))).toBe(false);
    // The same report, for the verdict at the end of scripts/test.sh.
    expect(readFileSync(hangLog, 'utf8')).toMatch(/blocked\.fixture\.ts made no progress[\s\S]*killed 2 process\(es\)/);
    // The other file ran to its end.
    expect(plain).toMatch(/✓ fine\.fixture\.ts/);
    expect(plain).not.toMatch(/hang guard: \S*fine\.fixture\.ts/);
  });
});
