/**
 * The genuine cloud-document tests do not depend on the machine's clock (issue #20): they verify
 * each document at its own time (AWS pendingTime, Azure createdOn), so they pass the same years
 * from now, after the bundled AWS certificates (valid until 2029-04-28) have expired. This runs
 * them in a child vitest with the clock of the whole process tree five years ahead, with
 * libfaketime (Debian `faketime`, installed by scripts/setup.sh). Only the fast cases run (the
 * one-byte mutation sweeps are the same code at the same injected time).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIVE_YEARS_MS = 5 * 365 * 86_400_000;

function underFaketime(args: string[], timeout: number) {
  const r = spawnSync('faketime', ['+5 years', ...args], { cwd: ROOT, encoding: 'utf8', timeout });
  if (r.error) throw new Error(`faketime could not run (${r.error.message}): install it with scripts/setup.sh`);
  return r;
}

describe('fixture tests with the clock five years ahead', () => {
  it('faketime moves the clock of a child node process', () => {
    const r = underFaketime([process.execPath, '-e', 'process.stdout.write(String(Date.now()))'], 10_000);
    expect(r.status, r.stderr).toBe(0);
    expect(Number(r.stdout) - Date.now()).toBeGreaterThan(FIVE_YEARS_MS - 86_400_000 * 3);
  });

  it('the genuine AWS and Azure document tests pass', () => {
    const r = underFaketime(
      [
        process.execPath,
        'node_modules/vitest/vitest.mjs',
        'run',
        'test/unit/join/aws-iid-genuine.test.ts',
        'test/unit/join/azure-genuine.test.ts',
        '-t',
        'verifies|another region|refused now|not PKCS#7|fixtures hold|region without',
      ],
      110_000,
    );
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out).toBe(0);
    const passed = Number(/Tests\s+(?:\S+\s+)*?(\d+) passed/.exec(out.replace(/\x1b\[[0-9;]*m/g, ''))?.[1] ?? 0);
    expect(passed, out).toBeGreaterThanOrEqual(20);
    expect(out).not.toMatch(/\d+ failed/);
  }, 120_000);
});
