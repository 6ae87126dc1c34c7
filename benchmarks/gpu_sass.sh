#!/usr/bin/env bash
# The SASS the device actually runs for our forward kernels (jaxlib's own Triton and ptxas,
# not benchmarks/triton_ir.py's local triton), with each instruction's executed count:
# Nsight Compute's source page, summed by opcode (benchmarks/ncu_sass.py).
# Usage: bash benchmarks/gpu_sass.sh [profile_kernels.py args]; $OUT/sass.csv.
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout "${PROFILE_TIMEOUT:-300}" "$NCU" --clock-control none -k regex:selective_scan \
  --section SourceCounters --page source --print-source sass --csv \
  python3 benchmarks/profile_kernels.py --no-anchor "$@" > "$OUT/sass.csv" 2> "$OUT/sass.err"
echo "ncu source rc=$?"; tail -2 "$OUT/sass.err"
python3 benchmarks/ncu_sass.py "$OUT/sass.csv" --top 12
