"""Serial state groups' backward: du, ddelta, dz added into the running sums by the kernel
(``accumulate``, the library's path) against the kernel's float32 outputs added by XLA (the
path before 3eb7292, patched back in here), in one process; and the float32 (batch, L, D)
copies in the optimized HLO (a copy of the scan's carry before each aliased call would
undo the in-kernel sum).

    python benchmarks/serial_sums_ab.py [--points 128:0,128:4,256:0] [--length 4096]

A point is N:m (m = state_every, 0 for the default). Prints one line a point: the
backward's ms (jitted pullback, median of --reps samples of 2 calls) "kernel" (timed
before and after "add") and "add", and the number of copies. bf16, batch 8, D 1536
(--dim), delta_softplus, D and delta_bias on. Runs 85-86 (benchmarks/NOTES.md v40).
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import selective_scan as bench  # noqa: E402
from pallas_kernels.selective_scan import fused  # noqa: E402

_backward_call = fused._backward_call
ADD_IN_XLA = [False]


def _backward_call_ab(lay, length, opts, args, dout, states, dlast, sums=None):
    """fused._backward_call, or with ADD_IN_XLA its outputs added to ``sums`` by XLA."""
    if sums is None or not ADD_IN_XLA[0]:
        return _backward_call(lay, length, opts, args, dout, states, dlast, sums=sums)
    res = list(_backward_call(lay, length, opts, args, dout, states, dlast))
    for i, total in zip((0, 1, 6), sums):          # du, ddelta[, dz]: the sums' order
        res[i] = res[i] + total
    return tuple(res)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default="128:0,128:4,256:0")
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--reps", type=int, default=15)
    a = p.parse_args()
    fused._backward_call = _backward_call_ab
    bench.DIM = a.dim
    for point in a.points.split(","):
        n, m = (int(x) for x in point.split(":"))
        bench.N_STATE = n
        args = bench.inputs(a.length, jnp.bfloat16, batch=8, seed=3)
        kw = dict(delta_softplus=True, serial_groups=True, **({"state_every": m} if m else {}))
        row = {}
        for mode in ("kernel", "add", "kernel"):
            ADD_IN_XLA[0] = mode == "add"
            pull = bench.vjp_of(lambda *x: bench.selective_scan_pallas(*x, **kw), args)
            dout = jnp.ones(args[0].shape, args[0].dtype)
            ms = 1e3 * bench.time_jax(pull, dout, reps=a.reps, inner=2)
            row.setdefault(mode, []).append(round(ms, 3))
            if mode == "kernel":
                hlo = pull.func.lower(*pull.args, dout).compile().as_text()
                shape = f"f32[8,{a.length},{a.dim}]"
                row["copies"] = sum(" copy(" in line and shape in line
                                    for line in hlo.splitlines())
        print(f"N {n} state_every {m or 'default'}", row, flush=True)


if __name__ == "__main__":
    main()
