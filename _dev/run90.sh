set -u
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=$PWD MAX_JOBS=16
export BENCH_COMMIT=${BENCH_COMMIT:-$(git rev-parse --short HEAD)}
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
START=$(date +%s)
python3 -c "from benchmarks import mamba_anchor as m; print('anchor build s', m.build()[1])" > $OUT/build.log 2>&1 &
B=$!
V="--variants default,default:serial_groups=1 --sections time,memory --lengths 4096 --dtypes bf16 --reps 5 --inner 2 --modes fwd,bwd,step"
for n in 32 64; do
  timeout 200 python3 benchmarks/selective_scan.py --out $OUT $V --impls ours --no-anchor --batch 8 --state-size $n >> $OUT/bench.log 2>&1
  echo "b8 N$n rc=$? elapsed $(( $(date +%s) - START ))"
done
wait $B; tail -1 $OUT/build.log
for n in 64 128; do
  timeout 170 python3 benchmarks/selective_scan.py --out $OUT $V --impls ours,anchor --batch 1 --state-size $n >> $OUT/bench.log 2>&1
  echo "b1 N$n rc=$? elapsed $(( $(date +%s) - START ))"
done
grep '^|' $OUT/bench.log
