"""Run each forward (and backward) kernel a few times at one shape, for a profiler (Nsight Compute) to read.

    ncu --clock-control none -k regex:selective_scan --metrics ... \
        python3 benchmarks/profile_kernels.py --length 4096 --batch 8

Ours (the library's default layout) and, when built (benchmarks/mamba_anchor.py), the
official kernel: ``--calls`` calls each after one warm-up call, bf16 inputs at the protocol's
shape. It prints nothing but what it ran; the numbers are the profiler's
(benchmarks/gpu_profile.sh turns them into tables).
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import selective_scan as bench  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--state-size", type=int, default=16, help="N")
    p.add_argument("--no-anchor", action="store_true")
    p.add_argument("--z", action="store_true", help="with the z gate")
    p.add_argument("--layout", default="", help="layout overrides of ours as a sweep point's "
                   "named fields, e.g. split=4:delta_tile=1")
    p.add_argument("--bwd", action="store_true", help="also the backward (ours and the anchor's)")
    a = p.parse_args()
    bench.N_STATE = a.state_size
    args = bench.inputs(a.length, jnp.bfloat16, batch=a.batch, with_z=a.z, seed=3)
    layout = bench.parse_point(":" + a.layout) if a.layout else {}
    layout.pop("variant", None)
    fwd = bench.ours_fwd(**layout)
    jax.block_until_ready(fwd(*args))                   # compile (its launches profiled too)
    for _ in range(a.calls):
        jax.block_until_ready(fwd(*args))
    if a.bwd:
        pull = bench.vjp_of(lambda *x: bench.selective_scan_pallas(
            *x, delta_softplus=True, **layout), args)
        dout = fwd(*args)
        for _ in range(a.calls + 1):
            jax.block_until_ready(pull(dout))
    print("ours", a.batch, a.length, flush=True)
    if not a.no_anchor:
        from benchmarks import mamba_anchor
        import torch
        mod, _ = mamba_anchor.build()
        targs = mamba_anchor.to_channels_first(args)
        for _ in range(a.calls + 1):
            _, x, out = mamba_anchor.forward(mod, targs)
        if a.bwd:
            dout = torch.randn_like(out)
            for _ in range(a.calls + 1):
                mamba_anchor.backward(mod, targs, dout, x, out)
        torch.cuda.synchronize()
        print("anchor", a.batch, a.length, flush=True)


if __name__ == "__main__":
    main()
