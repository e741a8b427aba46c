/**
 * StrykerJS for one area of security checks at a time (issue #20). Run it through
 * `npm run mutate -- <area>` (scripts/mutate.mjs), which sets SIGIL_MUTATE_AREA; the areas, their
 * source files and the tests that cover them are listed there. Method and scores: docs/testing.md.
 */
import { AREAS } from './scripts/mutate.mjs';

const name = process.env.SIGIL_MUTATE_AREA ?? '';
const area = AREAS[name];
if (area === undefined) throw new Error(`SIGIL_MUTATE_AREA must be one of ${Object.keys(AREAS).join(', ')}`);
const check = process.env.SIGIL_MUTATE_CHECK === '1';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts', related: false },
  // SIGIL_MUTATE_ONLY=file:line-line narrows a run to the lines being worked on.
  mutate: process.env.SIGIL_MUTATE_ONLY ? process.env.SIGIL_MUTATE_ONLY.split(',') : area.mutate,
  // Only the tests meant to cover this area run, for the dry run and for every mutant.
  testFiles: area.tests,
  checkers: check ? ['typescript'] : [],
  tsconfigFile: 'tsconfig.json',
  // One worker: the machine is shared, and the integration tests start real servers.
  concurrency: Number(process.env.SIGIL_MUTATE_CONCURRENCY ?? 1),
  // SIGIL_MUTATE_COVERAGE=all runs every listed test for every mutant (for code that per-test
  // coverage cannot attribute, e.g. reached only from beforeAll); static mutants then count too.
  coverageAnalysis: process.env.SIGIL_MUTATE_COVERAGE ?? 'perTest',
  // Added to each mutant's measured time: a mutant that hangs a handshake is a timeout (killed), soon.
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress-append-only', 'html', 'json'],
  // The CI subset prints its survivors and score table, not the ~300 lines listing what each test
  // killed: CI keeps only the tail of a run, and the suite's verdict must stay in it (test.sh).
  clearTextReporter: { reportTests: name !== 'ci' },
  htmlReporter: { fileName: `.tmp/mutation/${name}.html` },
  jsonReporter: { fileName: `.tmp/mutation/${name}.json` },
  tempDirName: '.tmp/stryker',
  cleanTempDir: 'always',
  // The sandbox needs src/, test/, the assets and profiles the tests read; not the build or benches.
  ignorePatterns: ['dist', 'bench', '.tmp', 'test/e2e', 'test/fuzz/regressions'],
  incremental: false,
  // Static mutants (module-level constants) need a fresh module graph per mutant: ~100x the cost.
  // They are reported as ignored; the tables they mutate are pinned by the tests of each check.
  ignoreStatic: process.env.SIGIL_MUTATE_STATIC !== '1' && process.env.SIGIL_MUTATE_COVERAGE === undefined,
  // An area with `break` (the CI subset) fails the run below that score; the others only report.
  thresholds: { high: 90, low: 80, break: area.break ?? null },
};
