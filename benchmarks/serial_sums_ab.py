"""Serial state groups: the running sums added by the kernels (``accumulate``, the library's
path) against the kernels' float32 outputs added by XLA (the paths before, patched back in
here), in one process: the backward's du, ddelta, dz (before 3eb7292) and the forward's out
(before this script's --direction fwd was added); and the float32 (batch, L, D) copies in
the optimized HLO (a copy of the scan's carry before each aliased call would undo the
in-kernel sum).

    python benchmarks/serial_sums_ab.py [--points 128:0,128:4,256:0] [--length 4096]
        [--directions bwd,fwd]

A point is N:m (m = state_every, 0 for the default). Prints one line a point and
direction: the ms (bwd: the jitted pullback; fwd: the jitted undifferentiated call; median
of --reps samples of 2 calls) "kernel" (timed before and after "add") and "add", and the
number of copies. bf16, batch 8, D 1536 (--dim), delta_softplus, D and delta_bias on, z
with --z. Runs 85-86 (benchmarks/NOTES.md v40), 89-.. (v41).
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
_forward_call = fused._forward_call
ADD_IN_XLA = [False]


def _forward_call_ab(lay, length, opts, save_states, args, total=None):
    """fused._forward_call, or with ADD_IN_XLA its out added to ``total`` by XLA."""
    if total is None or not ADD_IN_XLA[0]:
        return _forward_call(lay, length, opts, save_states, args, total=total)
    out, states, last = _forward_call(lay, length, opts, save_states, args)
    return out + total, states, last


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
    p.add_argument("--directions", default="bwd")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--z", action="store_true", help="with the z gate")
    a = p.parse_args()
    fused._backward_call = _backward_call_ab
    fused._forward_call = _forward_call_ab
    bench.DIM = a.dim
    for point in a.points.split(","):
        n, m = (int(x) for x in point.split(":"))
        bench.N_STATE = n
        args = bench.inputs(a.length, jnp.bfloat16, batch=a.batch, seed=3, with_z=a.z)
        kw = dict(delta_softplus=True, serial_groups=True, **({"state_every": m} if m else {}))
        for direction in a.directions.split(","):
            row = {}
            for mode in ("kernel", "add", "kernel"):
                ADD_IN_XLA[0] = mode == "add"
                call = lambda *x: bench.selective_scan_pallas(*x, **kw)
                if direction == "bwd":
                    fn = bench.vjp_of(call, args)
                    fn_args = (jnp.ones(args[0].shape, args[0].dtype),)
                else:
                    fn, fn_args = jax.jit(call), args
                ms = 1e3 * bench.time_jax(fn, *fn_args, reps=a.reps, inner=2)
                row.setdefault(mode, []).append(round(ms, 3))
                if mode == "kernel":
                    lowered = (fn.func.lower(*fn.args, *fn_args) if direction == "bwd"
                               else fn.lower(*fn_args))
                    hlo = lowered.compile().as_text()
                    shape = f"f32[{a.batch},{a.length},{a.dim}]"
                    row["copies"] = sum(" copy(" in line and shape in line
                                        for line in hlo.splitlines())
            print(f"{direction} N {n} state_every {m or 'default'} batch {a.batch}"
                  f"{' z' if a.z else ''}", row, flush=True)


if __name__ == "__main__":
    main()
