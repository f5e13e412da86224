#!/usr/bin/env bash
# Runs the Python runtime's pytest suite with the venv .ci/run makes (workers/python/.venv, or
# WEFT_PYTHON). pytest's exit code 5 ("no tests collected") is reported and not counted as a
# failure when arguments narrowed the run (e.g. a -k filter that matches nothing); the whole suite
# collecting nothing is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${WEFT_PYTHON:-.venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "$python is missing: python3 -m venv workers/python/.venv && workers/python/.venv/bin/pip install -c workers/python/constraints.txt -e 'workers/python[test,dev]'" >&2
  exit 1
fi
"$python" -m mypy || exit 1
"$python" -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ] && [ "$#" -gt 0 ]; then
  echo "pytest collected no tests (exit 5) for: $*" >&2
  exit 0
fi
exit "$status"
