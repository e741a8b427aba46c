/**
 * A vitest run of a fixture directory, started by a test (the harness's own tests: the hang guard,
 * the run record). The nested run must not write into the outer run's records: scripts/test.sh
 * gives its vitest SIGIL_TEST_HANG_LOG and SIGIL_TEST_RUN_RECORD, which every child inherits.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import path from 'node:path';

const repo = path.resolve(import.meta.dirname, '../..');

/** This process's environment without the outer run's record files, plus `extra`. */
export function nestedVitestEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { SIGIL_TEST_HANG_LOG: _hangLog, SIGIL_TEST_RUN_RECORD: _record, ...env } = process.env;
  return { ...env, ...extra };
}

/** `vitest run` on `fixtures` (its vitest.config.ts, as root) with `args` (reporters, outputs). */
export function spawnNestedVitest(fixtures: string, args: string[], o: SpawnOptions): ChildProcess {
  return spawn(
    path.join(repo, 'node_modules/.bin/vitest'),
    ['run', '--config', path.join(fixtures, 'vitest.config.ts'), '--root', fixtures, ...args],
    o,
  );
}
