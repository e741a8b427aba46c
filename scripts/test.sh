#!/usr/bin/env bash
# The whole test suite (README quick start, command 2): setup (idempotent), build, all tests.
# Ends with one plain line "N passed, N failed" (and skipped) read from vitest's JSON report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/check-layers.mjs   # house rules: import boundaries, no cycles, no module-level state (docs/architecture.md)
npx prettier --check src test bench scripts native --log-level warn   # one format (.prettierrc.json); fix with: npm run format
node scripts/gen-errors-doc.mjs --check   # docs/errors.md is generated from src/errors.ts (setup.sh built dist/)
npx tsc -p tsconfig.test.json   # tests and benches type-check too (vitest and tsx strip types unchecked)
mkdir -p .tmp
# Every process the tests start inherits this, so the ones still running afterwards can be found.
export SIGIL_TEST_RUN="$$-$RANDOM$RANDOM"
report=.tmp/vitest-report.json
# What the JSON report leaves out (unhandled errors, files that did not finish, hung files), for the verdict.
export SIGIL_TEST_RUN_RECORD="$PWD/.tmp/vitest-run-record.json" SIGIL_TEST_HANG_LOG="$PWD/.tmp/hang-guard.log"
rm -f "$report" "$SIGIL_TEST_RUN_RECORD" "$SIGIL_TEST_HANG_LOG"
vitest_status=0
# The hang guard turns a test file whose worker stops making progress (4 minutes without a test or
# hook starting or ending) into a failure that prints its process tree, instead of a run that
# waits for CI's limit (test/harness/hang-guard.ts). `timeout` bounds the rest (the whole suite
# takes ~9 minutes on a 2-core machine); exit 124 says it fired.
timeout --kill-after=30 45m node_modules/.bin/vitest run --reporter=default --reporter=json \
  --reporter=./test/harness/hang-guard.ts --reporter=./test/harness/run-record.ts \
  --outputFile.json="$report" "$@" || vitest_status=$?
node scripts/test-leftovers.mjs
stages=("vitest=$vitest_status")
# Issue #20, whole-suite runs only (no arguments): the fixture tests with the clock five years
# ahead (~15 s), then the bounded mutation subset, which fails below its score (docs/testing.md).
if [ "$#" -eq 0 ]; then
  future_status=0
  timeout --kill-after=30 10m npm run --silent test:future -- --reporter=dot || future_status=$?
  mutate_status=0
  timeout --kill-after=30 20m npm run --silent mutate:ci || mutate_status=$?
  node scripts/test-leftovers.mjs
  stages+=("test:future=$future_status" "mutate:ci=$mutate_status")
fi
# Last, because CI keeps only the tail of the output: each stage's status, the counts, and every
# failed test by name with the start of its message (scripts/test-verdict.mjs).
node scripts/test-verdict.mjs "$report" --record="$SIGIL_TEST_RUN_RECORD" --hang-log="$SIGIL_TEST_HANG_LOG" "${stages[@]}"
