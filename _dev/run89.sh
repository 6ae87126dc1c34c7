set -u
export BENCH_COMMIT=$(git rev-parse --short HEAD)
export OUT=${OUT:-/tmp/out}
START=$(date +%s)
COMMON="--sections time,memory --lengths 4096 --dtypes bf16 --reps 5 --inner 2 --modes fwd,bwd,step --impls ours,anchor --batch 8 --variants default,default:serial_groups=1"
PYTEST_K="serial" bash benchmarks/gpu_session.sh 220 "$COMMON --state-size 128" "$COMMON --state-size 256"
echo "elapsed $(( $(date +%s) - START ))"
timeout 120 python3 benchmarks/serial_sums_ab.py --points 128:0,256:0 --directions fwd --z --reps 10 > $OUT/ab.log 2>&1
cat $OUT/ab.log | grep -v Warn
echo "elapsed $(( $(date +%s) - START ))"
