#!/usr/bin/env bash
# Runs the Python runtime's pytest suite with the venv .ci/run makes (workers/python/.venv, or
# WEFT_PYTHON). pytest's exit code 5 ("no tests collected") is reported and not counted as a
# failure when arguments narrowed the run (e.g. a -k filter that matches nothing); the whole suite
# collecting nothing is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
python="${WEFT_PYTHON:-.venv/bin/python}"
# `pnpm install && pnpm test` on a fresh machine: make the venv (or add the test tools to the one
# `weft dev` made, which has only the runtime's dependencies), as .ci/run does, saying so.
if [ -z "${WEFT_PYTHON:-}" ] && ! { [ -x "$python" ] && "$python" -c "import pytest, mypy, grpc_tools" 2>/dev/null; }; then
  echo "making the Python test virtualenv: python3 -m venv workers/python/.venv && workers/python/.venv/bin/pip install -c workers/python/constraints.txt -e 'workers/python[test,dev]'" >&2
  { [ -x "$python" ] || python3 -m venv .venv; } &&
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,dev]' || exit 1
fi
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
