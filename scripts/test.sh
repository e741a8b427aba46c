#!/usr/bin/env bash
# The whole test suite (README quick start, command 2): setup (idempotent), build, all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx vitest run "$@"
