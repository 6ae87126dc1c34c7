#!/usr/bin/env bash
# Set up the environment (first run only) and run the test suite on the CPU.
# Pallas kernels run in interpret mode; GPU-only tests are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$PY" -m pytest -n 2 --durations=15 -q "$@"
