set -u
export BENCH_COMMIT=${BENCH_COMMIT:-$(git rev-parse --short HEAD)}
export OUT=${OUT:-/tmp/out}
START=$(date +%s)
V="--sections time,memory --lengths 4096 --dtypes bf16 --reps 5 --inner 2 --modes fwd,bwd,step --impls ours,anchor --batch 8 --variants default,default:serial_groups=0"
BENCH_TIMEOUT=150 PYTEST_K="(above_16 and (N64-bwdseg3 or N128-groups4 or N64-m4)) or (matches_reference_compiled_gpu and hybrid and (f32-all or bf16-grouped))" bash benchmarks/gpu_session.sh 200 "$V --state-size 64" "$V --state-size 128"
echo "elapsed $(( $(date +%s) - START ))"
