#!/usr/bin/env bash
# Runs the whole suite with the project's venv. pytest's exit code 5 (no test collected) is a failure
# here: a suite that ran nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$code"
