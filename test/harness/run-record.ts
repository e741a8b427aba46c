/**
 * Vitest reporter that writes what vitest's JSON report leaves out, for scripts/test-verdict.mjs:
 * the run's unhandled errors and the test files that did not pass.
 *
 * Why: vitest exits 1 for an unhandled error (a promise rejected after its test ended, an error
 * event nobody listened to, a worker that died) even when every test passed, and its JSON report
 * then says `success: true` with 0 failed. A file whose worker was killed (the hang guard) is
 * reported there as passed with its test pending. CI keeps only the tail of the output, so the
 * verdict must name these itself. Written to SIGIL_TEST_RUN_RECORD (scripts/test.sh sets it);
 * without it, this reporter does nothing.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

type RunEnd = Parameters<NonNullable<Reporter['onTestRunEnd']>>;
type SerializedError = RunEnd[1][number];

/**
 * What the verdict prints of an error: its name and message, where vitest saw it (the test file and
 * test it was running, which vitest's workers add to an unhandled error), and its stack.
 */
function summary(e: SerializedError): { message: string; where: string; stack: string } {
  const name = typeof e.name === 'string' && e.name !== '' ? `${e.name}: ` : '';
  const file = typeof e.VITEST_TEST_PATH === 'string' ? path.relative(process.cwd(), e.VITEST_TEST_PATH) : '';
  const test = typeof e.VITEST_TEST_NAME === 'string' ? ` > ${e.VITEST_TEST_NAME}` : '';
  return {
    message: `${name}${String(e.message ?? '')}`.slice(0, 2_000),
    where: file !== '' ? `${file}${test}` : '',
    stack: String(e.stack ?? '').slice(0, 4_000),
  };
}

export default class RunRecord implements Reporter {
  readonly #out = process.env.SIGIL_TEST_RUN_RECORD;

  onTestRunEnd(modules: RunEnd[0], unhandled: RunEnd[1], reason: RunEnd[2]): void {
    if (!this.#out) return;
    const notPassed = modules
      .filter((m: TestModule) => m.state() !== 'passed' && m.state() !== 'skipped')
      .map((m: TestModule) => ({
        file: path.relative(process.cwd(), m.moduleId),
        state: m.state(),
        errors: m.errors().map(summary),
      }));
    const record = { reason, unhandledErrors: unhandled.map(summary), notPassed };
    writeFileSync(this.#out, `${JSON.stringify(record, null, 1)}\n`);
  }
}
