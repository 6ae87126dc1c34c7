#!/usr/bin/env bash
# Set up the environment (first run only) and run the test suite on the CPU.
# Pallas kernels run in interpret mode; GPU-only tests are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# The CPU tests are mostly XLA compiling small programs (the Pallas kernels interpreted):
# LLVM at -O0 compiles them 20-40% faster (a state-groups interpret test 32 -> 22 s, the
# training CLI test 42 -> 24 s, 2026-12-04); set XLA_FLAGS to override.
export XLA_FLAGS="${XLA_FLAGS:---xla_backend_optimization_level=0}"
exec "$PY" -m pytest -n 2 --durations=15 -q "$@"
