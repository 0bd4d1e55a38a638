#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv if needed, then `promptrec demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/promptrec demo "$@"
