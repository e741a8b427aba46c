#!/usr/bin/env node
/**
 * The last lines of a whole-suite run (scripts/test.sh): one line per stage with its exit status,
 * the test counts from vitest's JSON report, and every failed test file and test by name with the
 * first lines of its message. CI keeps only the tail of a run's output; before this, a failed run
 * ended with the mutation report and the failure itself had scrolled out of what was kept.
 *
 *   node scripts/test-verdict.mjs <vitest-report.json> [--record=F] [--hang-log=F] stage=status ...
 *
 * --record: what test/harness/run-record.ts wrote (unhandled errors, files that did not pass:
 * vitest exits 1 for an unhandled error even when every test passed, and its JSON report does not
 * say so). --hang-log: what the hang guard reported (test/harness/hang-guard.ts).
 *
 * Exit status 1 when a stage failed, the report says a test failed, or no test ran; else 0.
 */
import { existsSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';

const MESSAGE_LINES = 6;
const MAX_FAILURES = 30;

const [reportPath, ...rest] = process.argv.slice(2);
const option = (name) => rest.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const recordPath = option('record');
const hangLogPath = option('hang-log');
const stages = rest
  .filter((a) => !a.startsWith('--'))
  .map((arg) => {
    const eq = arg.lastIndexOf('=');
    return { name: arg.slice(0, eq), status: Number(arg.slice(eq + 1)) };
  });

/** The first lines of a failure, without ANSI colours or vitest's stack frames into node_modules. */
function excerpt(text) {
  const plain = String(text)
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .filter((line) => line.trim() !== '' && !/node_modules|\(node:|node:internal/.test(line));
  return plain.slice(0, MESSAGE_LINES).map((line) => `      ${line.slice(0, 240)}`);
}

function firstLine(text) {
  return (
    String(text)
      .replace(/\u001b\[[0-9;]*m/g, '')
      .split('\n')
      .find((l) => l.trim() !== '') ?? ''
  ).slice(0, 240);
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
if (recordPath !== undefined && existsSync(recordPath)) {
  const record = JSON.parse(readFileSync(recordPath, 'utf8'));
  if (record.reason !== undefined && record.reason !== 'passed') out.push(`vitest's own verdict: ${record.reason}`);
  const errors = record.unhandledErrors ?? [];
  if (errors.length > 0) {
    failed = true;
    out.push(`unhandled errors: ${errors.length} (vitest fails the run for these even when every test passed)`);
    for (const e of errors.slice(0, 10)) {
      out.push(`  ERROR ${firstLine(e.message)}${e.where ? ` (while running ${e.where})` : ''}`, ...excerpt(e.stack));
    }
  }
  for (const m of record.notPassed ?? []) {
    if (m.state === 'failed' && m.errors.length === 0) continue; // named above, with its tests
    failed = true;
    out.push(`  NOT PASSED ${m.file} (${m.state})`);
    for (const e of m.errors.slice(0, 3)) out.push(...excerpt(`${e.message}\n${e.stack}`));
  }
}
if (hangLogPath !== undefined && existsSync(hangLogPath)) {
  const log = readFileSync(hangLogPath, 'utf8').trim();
  if (log !== '') {
    failed = true;
    out.push(
      'hang guard:',
      ...log
        .split('\n')
        .slice(0, 40)
        .map((l) => `  ${l}`),
    );
  }
}
out.push(failed ? 'verdict: FAILED' : 'verdict: passed');
console.log(out.join('\n'));
process.exit(failed ? 1 : 0);
