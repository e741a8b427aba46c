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
rm -f "$report"
status=0
# The hang guard turns a test file whose worker stops making progress (4 minutes without a test or
# hook starting or ending) into a failure that prints its process tree, instead of a run that
# waits for CI's limit (test/harness/hang-guard.ts). `timeout` bounds the rest (the whole suite
# takes ~9 minutes on a 2-core machine); exit 124 says it fired.
timeout --kill-after=30 45m node_modules/.bin/vitest run --reporter=default --reporter=json \
  --reporter=./test/harness/hang-guard.ts --outputFile.json="$report" "$@" || status=$?
[ "$status" = 124 ] && echo "test.sh: vitest did not end within 45 minutes (timeout fired)" >&2
node scripts/test-leftovers.mjs
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
    if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
  ' "$report" || status=1
fi
# Issue #20, whole-suite runs only (no arguments): the fixture tests with the clock five years
# ahead (~15 s), then the bounded mutation subset, which fails below its score (docs/testing.md).
if [ "$#" -eq 0 ]; then
  timeout --kill-after=30 10m npm run --silent test:future -- --reporter=dot || status=1
  timeout --kill-after=30 20m npm run --silent mutate:ci || status=1
  node scripts/test-leftovers.mjs
fi
exit "$status"
