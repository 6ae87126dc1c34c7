"""A time-parallel selective-scan forward in raw Triton (through jax-triton): an experiment.

    python3 benchmarks/time_parallel_triton.py --out DIR     (a GPU, with jax-triton importable)
    python3 benchmarks/time_parallel_triton.py --counts      (no GPU: ptxas counts, sm_90)

The Pallas kernels walk time one step after another in each program (the lanes forward, cut
into time segments where there are few channels: two passes, the exps computed in both).
This kernel does what the official CUDA kernel's block scan does: a program takes bd
channels of one sequence in tiles of T = K x W steps, (K, N, bd, W) values a tile (W = 32
lanes along time, K steps in each thread, every state of its steps in registers), computes
each (a, b) = (exp(delta A), delta u B) once and runs the linear recurrence

    h_t = a_t h_{t-1} + b_t,     (a1, b1) . (a2, b2) = (a1 a2, b1 a2 + b2)

by ``tl.associative_scan``: over the K steps in a thread, then over the W lanes' totals;
the state entering a lane is the previous lane's end (``tl.gather``), the state entering a
tile the last lane's end of the one before. Pallas' Triton lowering has no scan with a
two-operand combine (it lowers ``cumsum`` only), hence raw Triton.

Measured (benchmarks/NOTES.md v16, run 41, H200): correct (4e-7 of the reference in f32,
last state too), but 1.5-2x slower than the library's default forward at every shape timed
(batch 1 L 2^12-2^16, batch 8 L 4096): ~24 SASS a state update at 255 registers with the
layouts Triton picks. So it is not in the library; this script keeps the kernel, its check
and its timing for a next attempt (explicit layouts, e.g. Gluon's).
jax-triton is not a dependency of the project: on the device machine it is carried as a
wheel (jax-triton 0.3.1 needs jax >= 0.8.2 and triton >= 3.6; it imports only with a GPU
jaxlib).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks.selective_scan import append_row  # noqa: E402

record = functools.partial(append_row, filename="time_parallel.jsonl")


@functools.lru_cache(maxsize=None)
def _kernel():
    """The Triton kernel (triton imported here: the module imports without it)."""
    import triton
    import triton.language as tl

    @triton.jit
    def combine(a1, b1, a2, b2):
        return a1 * a2, b1 * a2 + b2

    @triton.jit
    def fwd(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, last_ptr,
            L: tl.constexpr, DIM: tl.constexpr, G: tl.constexpr, N: tl.constexpr,
            NP: tl.constexpr, K: tl.constexpr, W: tl.constexpr, BD: tl.constexpr,
            HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
            SOFTPLUS: tl.constexpr):
        # A tile: T = K x W steps; step k of lane w is t = w K + k: (K, NP, BD, W). Triton
        # lays it out with the lanes along W (time) and the warps along BD (along NP where
        # BD = 1): each thread holds its K steps of every state.
        pid_d = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        T: tl.constexpr = K * W
        d = pid_d * BD + tl.arange(0, BD)                          # (BD,) channels
        dmask = d < DIM
        n = tl.arange(0, NP)
        nmask = n < N
        kk = tl.arange(0, K)
        ww = tl.arange(0, W)
        g = (pid_d * BD) // (DIM // G)                             # bd divides D / G
        A2 = tl.load(A_ptr + d[None, :] * N + n[:, None],
                     mask=dmask[None, :] & nmask[:, None], other=0.0).to(tl.float32)
        A2 = (A2 * 1.4426950408889634)[None, :, :, None]           # (1, NP, BD, 1)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + d, mask=dmask, other=0.0).to(tl.float32)[None, :, None]
        if HAS_D:
            Dv = tl.load(D_ptr + d, mask=dmask, other=0.0).to(tl.float32)[None, :, None]
        tk = kk[:, None] + ww[None, :] * K                          # (K, W) step in the tile
        seq = tk[:, None, :] * DIM + d[None, :, None]               # (K, BD, W)
        dmask3 = dmask[None, :, None]
        bc = g * N + tk[:, None, :] * (G * N) + n[None, :, None]    # (K, NP, W)
        nmask3 = nmask[None, :, None]
        u_ptr += pid_b * (L * DIM)
        delta_ptr += pid_b * (L * DIM)
        out_ptr += pid_b * (L * DIM)
        B_ptr += pid_b * (L * G * N)
        C_ptr += pid_b * (L * G * N)
        if HAS_Z:
            z_ptr += pid_b * (L * DIM)
        h = tl.zeros((NP, BD, W), tl.float32)                      # the state entering the tile
        last_k = (kk == K - 1)[:, None, None, None]
        first_w = (ww == 0)[None, None, :]
        prev_w = tl.broadcast_to(tl.maximum(ww - 1, 0)[None, None, :], (NP, BD, W))
        last_w = tl.full((NP, BD, W), W - 1, tl.int32)
        for c in range(0, tl.cdiv(L, T)):
            step = c.to(tl.int64) * T                               # the tile's first step
            tmask = (c * T + tk) < L                                # (K, W)
            m3 = tmask[:, None, :] & dmask3
            uu = tl.load(u_ptr + step * DIM + seq, mask=m3, other=0.0).to(tl.float32)
            dt = tl.load(delta_ptr + step * DIM + seq, mask=m3, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                # log(1 + e^x) = ln2 log2(1 + 2^(x log2 e)); x past 20: x
                sp = 0.6931471805599453 * tl.log2(1.0 + tl.exp2(dt * 1.4426950408889634))
                dt = tl.where(dt <= 20.0, sp, dt)
            dt = tl.where(m3, dt, 0.0)                            # past L: a = 1, b = 0
            mbc = tmask[:, None, :] & nmask3
            Bt = tl.load(B_ptr + step * (G * N) + bc, mask=mbc, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + step * (G * N) + bc, mask=mbc, other=0.0).to(tl.float32)
            a = tl.exp2(dt[:, None, :, :] * A2)                   # (K, NP, BD, W)
            b = (dt * uu)[:, None, :, :] * Bt[:, :, None, :]
            a, b = tl.associative_scan((a, b), axis=0, combine_fn=combine)   # in each thread
            a_w = tl.sum(tl.where(last_k, a, 0.0), axis=0)        # (NP, BD, W) lane totals
            b_w = tl.sum(tl.where(last_k, b, 0.0), axis=0)
            a_w, b_w = tl.associative_scan((a_w, b_w), axis=2, combine_fn=combine)
            h_end = a_w * h + b_w                                  # state after lane w's steps
            h_in = tl.where(first_w, h, tl.gather(h_end, prev_w, axis=2))
            hs = a * h_in[None, :, :, :] + b                       # every step's state
            y = tl.sum(hs * Ct[:, :, None, :], axis=1)             # (K, BD, W)
            h = tl.gather(h_end, last_w, axis=2)                   # the tile's last state
            if HAS_D:
                y = y + Dv * uu
            if HAS_Z:
                zz = tl.load(z_ptr + step * DIM + seq, mask=m3, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(out_ptr + step * DIM + seq, y.to(out_ptr.dtype.element_ty), mask=m3)
        last = last_ptr + pid_b * (DIM * N) + d[None, :, None] * N + n[:, None, None]
        tl.store(last + ww[None, None, :] * 0, h,
                 mask=first_w & dmask3 & nmask[:, None, None])

    return fwd


def time_parallel_blocks(width, groups, steps=None, lanes=None, block_d=None,
                         num_warps=None):
    """(K, W, bd, warps): a tile is T = K x W steps (K a thread, W lanes along time) of bd
    channels; bd a power of two, dividing the group width D / G where G > 1 (a tile reads
    one group's B, C)."""
    num_warps = num_warps or 4
    block_d = block_d or num_warps
    if groups > 1:
        block_d = min(block_d, width & -width)            # the largest power of two dividing it
    return steps or 4, lanes or 32, block_d, num_warps


def selective_scan_time_parallel(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                 delta_softplus=False, *, return_last_state=False,
                                 steps=None, lanes=None, block_d=None, num_warps=None):
    """Forward of the selective scan by the time-parallel Triton kernel (no gradient).

        h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  out_t = (C_t . h_t + D u_t) silu(z_t)

    Args as :func:`.fused.selective_scan_pallas` (u, delta, z: (batch, L, D); A: (D, N);
    B, C: (batch, L, N) or (batch, L, G, N); D, delta_bias: (D,)). steps, lanes, block_d,
    num_warps: the tile and the warps of a program, see :func:`time_parallel_blocks`.
    Returns: out (batch, L, D) in u's dtype [, last state (batch, D, N) float32].
    """
    import jax_triton as jt
    batch, length, dim = u.shape
    n = A.shape[1]
    Bg = B[:, :, None, :] if B.ndim == 3 else B
    Cg = C[:, :, None, :] if C.ndim == 3 else C
    groups = Bg.shape[2]
    if Cg.shape != Bg.shape:
        raise ValueError(f"B and C must have the same shape, got {B.shape} and {C.shape}")
    K, W, block_d, num_warps = time_parallel_blocks(dim // groups, groups, steps, lanes,
                                                    block_d, num_warps)
    for name, v in (("steps", K), ("lanes", W), ("block_d", block_d), ("num_warps", num_warps)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two, got {v}")
    dummy = jnp.zeros((1,), jnp.float32)
    f32 = lambda x: dummy if x is None else x.astype(jnp.float32)      # noqa: E731
    out_shape = [jax.ShapeDtypeStruct(u.shape, u.dtype),
                 jax.ShapeDtypeStruct((batch, dim, n), jnp.float32)]
    out, last = jt.triton_call(
        u, delta, A.astype(jnp.float32), Bg, Cg, f32(D), dummy if z is None else z,
        f32(delta_bias), kernel=_kernel(), out_shape=out_shape,
        grid=(math.ceil(dim / block_d), batch), num_warps=num_warps, num_stages=1,
        name="selective_scan_fwd_time_parallel",
        L=length, DIM=dim, G=groups, N=n, NP=max(2, 1 << (n - 1).bit_length()), K=K, W=W,
        BD=block_d, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus))
    return (out, last) if return_last_state else out


def check(out_dir):
    """Values and last state against the sequential reference, several shapes and tiles."""
    from pallas_kernels.selective_scan.reference import selective_scan_ref
    from pallas_kernels.selective_scan.testing import random_inputs, rel_err
    cases = [(2, 1000, 64, 16, None, jnp.float32, True), (2, 1000, 64, 16, None, jnp.bfloat16, True),
             (1, 1, 32, 16, None, jnp.float32, True), (3, 257, 70, 5, None, jnp.float32, True),
             (2, 300, 64, 16, 2, jnp.bfloat16, True), (2, 129, 96, 4, 3, jnp.float32, False),
             (1, 4096, 256, 16, None, jnp.bfloat16, True)]
    tiles = [dict(), dict(steps=2), dict(num_warps=2, block_d=4), dict(steps=2, num_warps=1)]
    for (b, L, D, N, G, dt, every), tile in itertools.product(cases, tiles):
        a = random_inputs(jax.random.PRNGKey(L + D), b, L, D, N, G, dt, with_D=every,
                          with_z=every, with_bias=every)
        y, last = jax.jit(lambda *a: selective_scan_time_parallel(
            *a, delta_softplus=True, return_last_state=True, **tile))(*a)
        yr, lr = selective_scan_ref(*a, delta_softplus=True, return_last_state=True)
        record(out_dir, kind="check", shape=[b, L, D, N, G], dtype=str(jnp.dtype(dt)),
               cfg=tile, y_err=rel_err(y, yr), last_err=rel_err(last, lr))


def timing(out_dir):
    """ms a forward call, bf16, against the library's default in the same process."""
    from benchmarks import selective_scan as bench
    tiles = [dict(), dict(steps=2), dict(steps=8, block_d=1), dict(steps=2, num_warps=1),
             dict(num_warps=1), dict(steps=2, num_warps=2)]
    for batch, L in [(1, 4096), (1, 16384), (1, 65536), (8, 4096)]:
        args = bench.inputs(L, jnp.bfloat16, batch=batch)
        ms = 1e3 * bench.time_jax(bench.ours_fwd(), *args)
        record(out_dir, kind="time", impl="pallas-default", batch=batch, L=L, ms=ms,
               ns_token=1e6 * ms / (batch * L))
        for tile in tiles:
            f = jax.jit(lambda *a: selective_scan_time_parallel(*a, delta_softplus=True, **tile))
            ms = 1e3 * bench.time_jax(f, *args)
            record(out_dir, kind="time", impl="tp", cfg=tile, batch=batch, L=L, ms=ms,
                   ns_token=1e6 * ms / (batch * L))


def counts(tiles, length=4096, dim=1536, n=16):
    """ptxas registers and the time loop's SASS a state update, sm_90, bf16, no GPU needed
    (triton compiles the kernel; ptxas and cuobjdump from the triton wheel)."""
    import tempfile
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import triton_ir
    tmp = tempfile.mkdtemp()
    for K, W, bd, warps in tiles:
        sig = {name: "*bf16" for name in ("u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "out_ptr")}
        sig.update({name: "*fp32" for name in ("A_ptr", "D_ptr", "bias_ptr", "last_ptr")})
        consts = dict(L=length, DIM=dim, G=1, N=n, NP=n, K=K, W=W, BD=bd, HAS_D=True,
                      HAS_Z=False, HAS_BIAS=True, SOFTPLUS=True)
        sig.update({k: "constexpr" for k in consts})
        sig = {k: sig[k] for k in _kernel().arg_names}
        k = triton.compile(ASTSource(fn=_kernel(), signature=sig, constexprs=consts),
                           target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": warps, "num_stages": 1})
        with open(os.path.join(tmp, "tp.ptx"), "w") as f:
            f.write(k.asm["ptx"])
        res = triton_ir._ptxas(k.asm["ptx"], "tp", tmp, "tp")
        per_thread = n * K * W * bd / (32 * warps)         # state updates a thread a tile
        loop = res.get("loop_sass", 0)
        print(f"K {K} W {W} bd {bd} warps {warps}: {res['registers']} registers, "
              f"{res['spill_bytes']} spill bytes, {loop} loop SASS, "
              f"{loop / per_thread:.1f} a state update")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="", help="a folder for time_parallel.jsonl")
    p.add_argument("--counts", action="store_true", help="ptxas counts only (no GPU)")
    a = p.parse_args()
    if a.counts:
        counts([(4, 32, 4, 4), (2, 32, 4, 4), (8, 32, 1, 4), (2, 32, 1, 1)])
        return
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    check(a.out)
    timing(a.out)


if __name__ == "__main__":
    main()
