#!/usr/bin/env node
/**
 * The last lines of a whole-suite run (scripts/test.sh): one line per stage with its exit status,
 * the test counts from vitest's JSON report, and every failed test file and test by name with the
 * first lines of its message. CI keeps only the tail of a run's output; before this, a failed run
 * ended with the mutation report and the failure itself had scrolled out of what was kept.
 *
 *   node scripts/test-verdict.mjs <vitest-report.json> stage=status [stage=status ...]
 *
 * Exit status 1 when a stage failed, the report says a test failed, or no test ran; else 0.
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

const MESSAGE_LINES = 6;
const MAX_FAILURES = 30;

const [reportPath, ...stageArgs] = process.argv.slice(2);
const stages = stageArgs.map((arg) => {
  const eq = arg.lastIndexOf('=');
  return { name: arg.slice(0, eq), status: Number(arg.slice(eq + 1)) };
});

/** The first lines of a failure, without ANSI colours or vitest's stack frames into node_modules. */
function excerpt(text) {
  const plain = String(text)
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .filter((line) => line.trim() !== '' && !/node_modules|node:internal/.test(line));
  return plain.slice(0, MESSAGE_LINES).map((line) => `      ${line.slice(0, 240)}`);
}

const out = ['', '== test.sh verdict =='];
let failed = false;
for (const { name, status } of stages) {
  out.push(`${name}: ${status === 0 ? 'ok' : `FAILED (exit ${status}${status === 124 ? ', timeout fired' : ''})`}`);
  if (status !== 0) failed = true;
}

if (reportPath === undefined || !existsSync(reportPath)) {
  out.push(`vitest report: missing (${reportPath ?? 'no path given'}); vitest ended before writing it`);
  failed = true;
} else {
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  out.push(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`);
  if (report.numTotalTests === 0) {
    out.push('no test ran');
    failed = true;
  }
  if (report.numFailedTests > 0 || report.numFailedTestSuites > 0) failed = true;
  let shown = 0;
  for (const file of report.testResults ?? []) {
    const name = relative(process.cwd(), file.name);
    const bad = (file.assertionResults ?? []).filter((t) => t.status === 'failed');
    // A file can fail with no failed test: it did not load, a hook threw, or the hang guard ended it.
    if (file.status === 'failed' && bad.length === 0) {
      if (shown++ < MAX_FAILURES) out.push(`  FAIL ${name} (the file itself)`, ...excerpt(file.message ?? ''));
    }
    for (const t of bad) {
      if (shown++ < MAX_FAILURES)
        out.push(`  FAIL ${name} > ${t.fullName}`, ...excerpt((t.failureMessages ?? []).join('\n')));
    }
  }
  if (shown > MAX_FAILURES) out.push(`  … and ${shown - MAX_FAILURES} more (vitest's output above has them all)`);
}
out.push(failed ? 'verdict: FAILED' : 'verdict: passed');
console.log(out.join('\n'));
process.exit(failed ? 1 : 0);
