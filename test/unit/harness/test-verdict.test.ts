// scripts/test-verdict.mjs, the last lines of a whole-suite run: CI keeps only the tail of the
// output, so a failure must be named there, and the exit status must say failed whenever any stage,
// test or file did — or an unhandled error, which vitest's JSON report does not show
// (test/harness/run-record.ts records it).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nestedVitestEnv, spawnNestedVitest } from '../../helpers/nested-vitest.js';

const repo = path.resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'sigil-verdict-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Assertion {
  fullName: string;
  status: 'passed' | 'failed' | 'skipped';
  failureMessages: string[];
}
interface FileResult {
  name: string;
  status: 'passed' | 'failed';
  message: string;
  assertionResults: Assertion[];
}

function report(files: FileResult[], extra: Record<string, number> = {}): string {
  const tests = files.flatMap((f) => f.assertionResults);
  const file = path.join(dir, `r${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      numTotalTests: tests.length,
      numPassedTests: tests.filter((t) => t.status === 'passed').length,
      numFailedTests: tests.filter((t) => t.status === 'failed').length,
      numPendingTests: tests.filter((t) => t.status === 'skipped').length,
      numTodoTests: 0,
      numFailedTestSuites: files.filter((f) => f.status === 'failed').length,
      testResults: files,
      ...extra,
    }),
  );
  return file;
}

function verdict(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.join(repo, 'scripts/test-verdict.mjs'), ...args], {
    cwd: repo,
    encoding: 'utf8',
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

const ok: FileResult = {
  name: path.join(repo, 'test/unit/a.test.ts'),
  status: 'passed',
  message: '',
  assertionResults: [
    { fullName: 'a works', status: 'passed', failureMessages: [] },
    { fullName: 'a later', status: 'skipped', failureMessages: [] },
  ],
};

describe('test-verdict', () => {
  it('all stages 0 and no failed test: passed, exit 0, with the counts', () => {
    const r = verdict(report([ok]), 'vitest=0', 'test:future=0', 'mutate:ci=0');
    expect(r.status).toBe(0);
    expect(r.out).toContain('tests: 1 passed, 0 failed, 1 skipped');
    expect(r.out).toContain('mutate:ci: ok');
    expect(r.out.trimEnd().endsWith('verdict: passed')).toBe(true);
  });

  it('a failed test is named with its file and the start of its message, without colour or node_modules frames', () => {
    const bad: FileResult = {
      name: path.join(repo, 'test/integration/b.test.ts'),
      status: 'failed',
      message: '',
      assertionResults: [
        {
          fullName: 'b renews over MQTT',
          status: 'failed',
          failureMessages: [
            '\u001b[31mAssertionError: expected 1 to be 2\u001b[39m\n    at x (/r/node_modules/vitest/x.js:1:1)\n    at test/integration/b.test.ts:9:3',
          ],
        },
      ],
    };
    const r = verdict(report([ok, bad]), 'vitest=1');
    expect(r.status).toBe(1);
    expect(r.out).toContain('vitest: FAILED (exit 1)');
    expect(r.out).toContain('FAIL test/integration/b.test.ts > b renews over MQTT');
    expect(r.out).toContain('AssertionError: expected 1 to be 2');
    expect(r.out).toContain('at test/integration/b.test.ts:9:3');
    expect(r.out).not.toContain('node_modules');
    expect(r.out).not.toContain('\u001b[');
    expect(r.out.trimEnd().endsWith('verdict: FAILED')).toBe(true);
  });

  it('a file that failed with no failed test (a hook, an import, the hang guard) is named with its message', () => {
    const hung: FileResult = {
      name: path.join(repo, 'test/integration/c.test.ts'),
      status: 'failed',
      message: 'hang guard: no test or hook progress for 240 s',
      assertionResults: [],
    };
    // vitest counts such a file in numFailedTestSuites only; its exit status alone would say so too,
    // but the verdict must not depend on it.
    const r = verdict(report([ok, hung]), 'vitest=0');
    expect(r.status).toBe(1);
    expect(r.out).toContain('FAIL test/integration/c.test.ts (the file itself)');
    expect(r.out).toContain('hang guard: no test or hook progress for 240 s');
  });

  it('a failed later stage fails the verdict even when every test passed, and says when timeout fired', () => {
    const r = verdict(report([ok]), 'vitest=0', 'test:future=124', 'mutate:ci=0');
    expect(r.status).toBe(1);
    expect(r.out).toContain('test:future: FAILED (exit 124, timeout fired)');
  });

  it('a missing report or a run of no tests fails', () => {
    const missing = verdict(path.join(dir, 'absent.json'), 'vitest=0');
    expect(missing.status).toBe(1);
    expect(missing.out).toContain('vitest ended before writing it');
    const none = verdict(report([]), 'vitest=0');
    expect(none.status).toBe(1);
    expect(none.out).toContain('no test ran');
  });

  it('an unhandled error in a run whose tests all passed (a real vitest run with run-record.ts) is named with its file', async () => {
    const fixtures = path.join(repo, 'test/fixtures/run-record');
    const json = path.join(dir, 'late.json');
    const record = path.join(dir, 'late-record.json');
    const code = await new Promise<number | null>((resolve) => {
      const run = spawnNestedVitest(
        fixtures,
        ['--reporter=json', `--outputFile.json=${json}`, `--reporter=${path.join(repo, 'test/harness/run-record.ts')}`],
        { cwd: repo, env: nestedVitestEnv({ SIGIL_TEST_RUN_RECORD: record }), stdio: 'ignore' },
      );
      run.on('close', resolve);
    });
    expect(code).toBe(1); // vitest's own verdict
    const r = verdict(json, `--record=${record}`, 'vitest=0'); // even if its exit status were lost
    expect(r.status).toBe(1);
    expect(r.out).toContain('tests: 2 passed, 0 failed, 0 skipped');
    expect(r.out).toContain(
      'ERROR Error: late failure nobody awaited (while running test/fixtures/run-record/late-rejection.fixture.ts > passes while the rejection happens)',
    );
    expect(r.out).toContain('late-rejection.fixture.ts:4:');
  }, 60_000);

  it('a file the hang guard stopped: its report is repeated, the file is named as not passed, and the verdict fails', () => {
    const record = path.join(dir, 'hung-record.json');
    writeFileSync(
      record,
      JSON.stringify({
        reason: 'passed',
        unhandledErrors: [],
        notPassed: [{ file: 'test/integration/tpm/x.test.ts', state: 'pending', errors: [] }],
      }),
    );
    const hangLog = path.join(dir, 'hang.log');
    writeFileSync(hangLog, 'hang guard: test/integration/tpm/x.test.ts made no progress for 240 s (running 250 s)\n');
    const r = verdict(report([ok]), `--record=${record}`, `--hang-log=${hangLog}`, 'vitest=0');
    expect(r.status).toBe(1);
    expect(r.out).toContain('NOT PASSED test/integration/tpm/x.test.ts (pending)');
    expect(r.out).toContain('hang guard: test/integration/tpm/x.test.ts made no progress for 240 s');
    // An empty hang log and a clean record change nothing.
    writeFileSync(hangLog, '');
    writeFileSync(record, JSON.stringify({ reason: 'passed', unhandledErrors: [], notPassed: [] }));
    expect(verdict(report([ok]), `--record=${record}`, `--hang-log=${hangLog}`, 'vitest=0').status).toBe(0);
  });
});
