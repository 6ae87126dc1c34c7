#!/usr/bin/env bash
# Nsight Compute on the selective-scan forward kernels at one shape (profile_kernels.py).
#   bash benchmarks/gpu_profile.sh [profile_kernels.py args]
#     counters of ours and the anchor (pipe utilization, issue activity, occupancy, stall
#     reasons per issue): $OUT/ncu.csv and a table (ncu_table.py). The anchor must be built
#     already (benchmarks/mamba_anchor.py), else pass --no-anchor.
#   bash benchmarks/gpu_profile.sh --sass [profile_kernels.py args]
#     the SASS the device actually runs for ours (jaxlib's own Triton and ptxas, not
#     triton_ir.py's local triton) with each instruction's executed count, summed by opcode
#     (ncu_sass.py): $OUT/sass.csv.
#   KERNELS=regex picks the kernels profiled (default selective_scan: ours and the anchor's);
#   KERNELS=. takes every kernel, XLA's own fusions too (where a call's time goes).
set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=$PWD
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ "${1:-}" = "--sass" ]; then
  shift
  timeout "${PROFILE_TIMEOUT:-300}" "$NCU" --clock-control none -k regex:selective_scan \
    --section SourceCounters --page source --print-source sass --csv \
    python3 benchmarks/profile_kernels.py --no-anchor "$@" > "$OUT/sass.csv" 2> "$OUT/sass.err"
  echo "ncu source rc=$?"; tail -2 "$OUT/sass.err"
  python3 benchmarks/ncu_sass.py "$OUT/sass.csv" --top 12
  exit
fi
#   METRICS=list replaces the counters (e.g. gpu__time_duration.sum alone: fewer replays).
M="gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread"
M+=",sm__warps_active.avg.pct_of_peak_sustained_active"
M+=",smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum"
M+=",regex:^sm__inst_executed_pipe_[a-z_]*\.avg\.pct_of_peak_sustained_active$"
M+=",regex:^sm__pipe_[a-z_]*_cycles_active\.avg\.pct_of_peak_sustained_active$"
M+=",regex:^smsp__average_warps_issue_stalled_[a-z_]*_per_issue_active\.ratio$"
M+=",l1tex__throughput.avg.pct_of_peak_sustained_active"
M+=",dram__throughput.avg.pct_of_peak_sustained_elapsed"
METRICS=${METRICS:-$M}
timeout "${PROFILE_TIMEOUT:-300}" "$NCU" --clock-control none -k "regex:${KERNELS:-selective_scan}" \
  --csv --page raw --metrics "$METRICS" \
  python3 benchmarks/profile_kernels.py "$@" > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
echo "ncu rc=$?"; tail -3 "$OUT/ncu.err"
python3 benchmarks/ncu_table.py "$OUT/ncu.csv"
