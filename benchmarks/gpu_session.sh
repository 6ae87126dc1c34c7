#!/usr/bin/env bash
# One GPU session: build the anchor (background), compiled tests, benchmark sections.
# Usage: bash benchmarks/gpu_session.sh "<pytest timeout s>" "<benchmark args>" ["<more args>"]
# (PYTEST_K=expr: only the compiled tests matching it; NO_ANCHOR=1: no anchor build)
# Logs and results.jsonl go to $OUT.
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=$PWD MAX_JOBS=16
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/build.log" 2>&1
BUILD=
if [ -z "${NO_ANCHOR:-}" ]; then  # NO_ANCHOR=1: skip the anchor build (~150 s on 16 cores)
  python3 -c "from benchmarks import mamba_anchor as m; print('anchor build s', m.build()[1])" \
    >> "$OUT/build.log" 2>&1 &
  BUILD=$!
fi
if [ "$1" != "0" ]; then
  timeout "$1" python3 -m pytest -v -m gpu tests/test_pallas_selective_scan.py -x -p no:cacheprovider ${PYTEST_K:+-k "$PYTEST_K"} \
    --durations=5 > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?"; tail -3 "$OUT/gpu_tests.log"
fi
[ -n "$BUILD" ] && wait $BUILD; tail -2 "$OUT/build.log"
shift
for args in "$@"; do
  timeout "${BENCH_TIMEOUT:-400}" python3 benchmarks/selective_scan.py --out "$OUT" $args >> "$OUT/bench.log" 2>&1
  echo "bench rc=$? ($args)"
done
grep -v '^{' "$OUT/bench.log" | grep -v Warning | tail -40
