/**
 * The type-level half of the replay-only guarantee (attest/eventlog.ts): test/types/*.ts must
 * compile, and every `@ts-expect-error` in them must mark a real error (tsc reports an unused
 * one, TS2578) — so handing an unverified log to a profile rule stays a compile error.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');

describe('VerifiedEventLog types', () => {
  it('an unverified log does not type-check where a verified one is required', () => {
    const r = spawnSync(
      process.execPath,
      [resolve(ROOT, 'node_modules/typescript/bin/tsc'), '-p', resolve(ROOT, 'test/types/tsconfig.json')],
      { encoding: 'utf8' },
    );
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 60_000);
});
