"""A selective-scan forward in Pallas' Mosaic GPU backend (Hopper): an experiment.

    python3 benchmarks/mosaic_gpu_scan.py --out DIR     (a GPU: check, then time)
    python3 benchmarks/mosaic_gpu_scan.py --lower       (no GPU: lower its variants for CUDA)

The issue behind the fused kernels asks for them through Pallas' Triton lowering "or Mosaic
GPU if that is faster on Hopper". This script holds the Mosaic GPU side of that comparison:
the forward (D skip, delta_bias, softplus; no z gate, no last state, B and C not grouped)
written the way Mosaic GPU programs are, one warpgroup (128 threads) a program:

    program (b, j): channels j*128 .. j*128 + 127 of sequence b, one thread a channel,
    its N states N float32 registers (h[k], k = 0 .. N-1, as the library's lanes kernels),
    time walked in chunks of T steps:
        h[k] <- exp2(delta_t A[k] log2 e) h[k] + B_t[k] delta_t u_t,
        y_t   = sum_k C_t[k] h[k] + D u_t

``pipelined`` (the default): each chunk's (T, 128) rows of u and delta and (T, N) of B and C
are copied to shared memory by TMA (``plgpu.emit_pipeline``, two chunks in flight) and y
leaves through shared memory the same way; else (``pipelined=False``) the threads read and
write global memory directly. batch x D / 128 programs are few (96 at batch 8, D 1536: 384
warps; the library's default forward splits a channel's states over 4 lanes for 1536
one-warp programs, NOTES.md v10-v13, a layout that needs a sum over an array axis, which
Mosaic GPU's Pallas lowering does not have for these arrays), so by default time is cut
into P segments (:func:`default_segments`: 4 at batch 8 D 1536) run in two passes, as the
library's lanes forward does at batch 1: each exp computed twice, for 4x the warps. Timed
against the library's default forward in the same process (``timing``).

The Pallas interpreter has no rule for the TMA copies, so on the CPU (``interpret=True``)
the pipelined variant walks the same chunks by plain loads (the same chunk body), which the
tests check against the reference; the GPU checks both variants compiled (``check``).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.selective_scan import append_row  # noqa: E402

record = functools.partial(append_row, filename="mosaic_gpu.jsonl")

BLOCK_D = 128            # channels a program: one warpgroup, one thread a channel
LOG2E = 1.4426950408889634


def _chunk_body(u_s, d_s, B_s, C_s, o_s, carry, A2, Dskip, bias, softplus, T):
    """T steps from the refs of one chunk: u_s, d_s, o_s (T, 128) rows (o_s None: no y),
    B_s, C_s (T, N); carry: the N state registers (128,) each and the sum of delta so far.
    Returns the new carry."""
    h, dsum = list(carry[0]), carry[1]
    for i in range(T):
        u = u_s[i, :].astype(jnp.float32)
        d = d_s[i, :].astype(jnp.float32)
        if bias is not None:
            d = d + bias
        if softplus:
            # softplus as mamba (delta itself above 20); log(1 + e^x): Mosaic GPU has no log1p
            d = jnp.where(d > 20.0, d, jnp.log(1.0 + jnp.exp(d)))
        du = d * u
        dsum = dsum + d
        y = Dskip * u if Dskip is not None and o_s is not None else None
        for k in range(len(h)):
            h[k] = jnp.exp2(d * A2[k]) * h[k] + B_s[i, k].astype(jnp.float32) * du
            if o_s is not None:
                term = C_s[i, k].astype(jnp.float32) * h[k]
                y = term if y is None else y + term
        if o_s is not None:
            o_s[i, :] = y.astype(o_s.dtype)
    return tuple(h), dsum


def _kernel(*refs, n, T, steps, has_D, has_bias, softplus, pipelined, first, start):
    """Program (b, j, p): channels j*128 .. j*128 + 127 of sequence b over time segment p
    (``steps`` steps). ``first``: pass 1 of a segmented forward, no y: the segment's end
    state from a zero start and its sum of delta; ``start``: the state entering the segment
    is read (pass 2), else zero."""
    u_ref, d_ref, A_ref, B_ref, C_ref = refs[:5]
    rest = list(refs[5:])
    D_ref = rest.pop(0) if has_D else None
    bias_ref = rest.pop(0) if has_bias else None
    start_ref = rest.pop(0) if start else None
    b, p = pl.program_id(0), pl.program_id(2)
    chan = pl.ds(pl.program_id(1) * BLOCK_D, BLOCK_D)
    A2 = [A_ref[k, chan] * LOG2E for k in range(n)]
    Dskip = D_ref[chan] if has_D else None
    bias = bias_ref[chan] if has_bias else None
    # zeros derived from a loaded row, so that the loop carry starts in the rows' layout
    zero = A2[0] * 0.0
    h0 = tuple(start_ref[b, p, k, chan] for k in range(n)) if start else (zero,) * n
    body = functools.partial(_chunk_body, A2=A2, Dskip=Dskip, bias=bias, softplus=softplus,
                             T=T)
    time = pl.ds(p * steps, steps)
    gmem = [u_ref.at[b, time, chan], d_ref.at[b, time, chan], B_ref.at[b, time],
            C_ref.at[b, time]]
    if not first:
        gmem.append(rest[0].at[b, time, chan])
    if pipelined:
        from jax.experimental.pallas import mosaic_gpu as plgpu
        seq = plgpu.BlockSpec((T, BLOCK_D), lambda c: (c, 0))
        bc = plgpu.BlockSpec((T, n), lambda c: (c, 0))

        def piped(_, u_s, d_s, B_s, C_s, *o_s_and_carry):
            *o_s, carry = o_s_and_carry
            return body(u_s, d_s, B_s, C_s, o_s[0] if o_s else None, carry)
        carry = plgpu.emit_pipeline(
            piped, grid=(steps // T,), in_specs=[seq, seq, bc, bc],
            out_specs=[] if first else [seq], max_concurrent_steps=2,
            init_carry=(h0, zero))(*gmem)
    else:
        def chunk(c, carry):
            chunk_refs = [r.at[pl.ds(c * T, T)] for r in gmem]
            o_s = None if first else chunk_refs[4]
            return body(*chunk_refs[:4], o_s, carry)
        carry = jax.lax.fori_loop(0, steps // T, chunk, (h0, zero))
    if first:
        end_ref, dsum_ref = rest
        for k in range(n):
            end_ref[b, p, k, chan] = carry[0][k]
        dsum_ref[b, p, chan] = carry[1]


def default_segments(batch, dim, length, programs=384, min_steps=128):
    """P time segments: the smallest power of two giving batch x D / 128 x P >= ``programs``
    warpgroups (384: the 1536 warps of the library's default forward at batch 8 D 1536),
    with segments of at least ``min_steps`` steps."""
    P = 1
    while batch * (dim // BLOCK_D) * P < programs and length // (2 * P) >= min_steps:
        P *= 2
    return P


def selective_scan_mosaic_gpu(u, delta, A, B, C, D=None, delta_bias=None,
                              delta_softplus=False, *, chunk=16, pipelined=True,
                              segments=None, interpret=False):
    """The selective-scan forward in Mosaic GPU kernels (see the module docstring):

        h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   out_t = C_t . h_t + D u_t

    u, delta: (batch, L, D), D a multiple of 128; A: (D, N); B, C: (batch, L, N) (not
    grouped); D, delta_bias: optional (D,). L is padded to a multiple of ``chunk`` (T
    steps a chunk) x ``segments``. ``segments`` P (default :func:`default_segments`): time
    cut into P segments run in parallel, in two passes as the library's lanes forward: the
    first gives each segment's end state from a zero start (segments 0 .. P-2) and its
    decay exp(A sum delta); XLA links them into the state entering each segment; the
    second runs every segment from it and writes y (every exp computed twice). Returns
    out (batch, L, D) in u's dtype. ``interpret``: the Pallas interpreter (CPU), where the
    pipelined variant walks its chunks by plain loads."""
    from jax.experimental.pallas import mosaic_gpu as plgpu
    if u.ndim != 3:
        raise ValueError(f"u must have shape (batch, L, D), got {tuple(u.shape)}")
    batch, length, dim = u.shape
    if dim % BLOCK_D:
        raise ValueError(f"u's D must be a multiple of {BLOCK_D} (one warpgroup a program), "
                         f"got {dim}")
    n = A.shape[1]
    if A.shape != (dim, n):
        raise ValueError(f"A must have shape (D={dim}, N), got {tuple(A.shape)}")
    for name, x in (("B", B), ("C", C)):
        if x.shape != (batch, length, n):
            raise ValueError(f"{name} must have shape (batch, L, N) = {(batch, length, n)} "
                             f"(groups are not supported here), got {tuple(x.shape)}")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    T = chunk
    P = default_segments(batch, dim, length) if segments is None else segments
    length_pad = -(-length // (T * P)) * T * P
    steps = length_pad // P

    def pad(x):
        return jnp.pad(x, ((0, 0), (0, length_pad - length), (0, 0)))

    A_T = A.T.astype(jnp.float32)
    args = [pad(u), pad(delta), A_T, pad(B), pad(C)] + [
        x.astype(jnp.float32) for x in (D, delta_bias) if x is not None]
    gmem = pl.BlockSpec(memory_space=plgpu.GMEM)
    kernel = functools.partial(
        _kernel, n=n, T=T, steps=steps, has_D=D is not None, has_bias=delta_bias is not None,
        softplus=bool(delta_softplus), pipelined=pipelined and not interpret)

    def call(grid_p, first, start, *extra):
        if first:
            out_shape = [jax.ShapeDtypeStruct((batch, P - 1, n, dim), jnp.float32),
                         jax.ShapeDtypeStruct((batch, P - 1, dim), jnp.float32)]
        else:
            out_shape = jax.ShapeDtypeStruct((batch, length_pad, dim), u.dtype)
        return pl.pallas_call(
            functools.partial(kernel, first=first, start=start),
            grid=(batch, dim // BLOCK_D, grid_p), in_specs=[gmem] * (len(args) + len(extra)),
            out_specs=[gmem] * 2 if first else gmem, out_shape=out_shape,
            compiler_params=plgpu.CompilerParams(approx_math=True), interpret=interpret,
            name="selective_scan_fwd_mosaic_gpu" + ("_pass1" if first else ""),
        )(*args, *extra)

    if P == 1:
        return call(1, False, False)[:, :length]
    ends, dsums = call(P - 1, True, False)
    # the state entering segment p + 1: exp(A sum delta) (segment p's decay) times the
    # state entering p, plus p's end from a zero start
    decays = jnp.exp(A_T[None, None] * dsums[:, :, None, :])               # (b, P-1, N, D)

    def link(h, x):
        h = x[0] * h + x[1]
        return h, h
    zero = jnp.zeros((batch, n, dim), jnp.float32)
    _, entering = jax.lax.scan(link, zero, (jnp.swapaxes(decays, 0, 1), jnp.swapaxes(ends, 0, 1)))
    starts = jnp.concatenate([zero[:, None], jnp.swapaxes(entering, 0, 1)], axis=1)
    return call(P, False, True, starts)[:, :length]


VARIANTS = [dict(), dict(segments=1), dict(chunk=8), dict(chunk=32), dict(pipelined=False),
            dict(segments=1, pipelined=False)]


def check(out_dir):
    """Values against the sequential reference, compiled, several shapes and variants (a
    variant that fails to compile, e.g. a TMA copy of B, C rows under 16 bytes at N 5,
    is a row with its error)."""
    from pallas_kernels.selective_scan.reference import selective_scan_ref
    from pallas_kernels.selective_scan.testing import random_inputs, rel_err
    cases = [(2, 1000, 256, 16, jnp.float32, True), (2, 1000, 256, 16, jnp.bfloat16, True),
             (3, 37, 128, 5, jnp.float32, False), (1, 4096, 1536, 16, jnp.bfloat16, True)]
    for b, L, D, N, dt, every in cases:
        a = random_inputs(jax.random.PRNGKey(L + D), b, L, D, N, None, dt, with_D=every,
                          with_z=False, with_bias=every)
        u, delta, A, B, C, Dskip, _, bias = a
        ref = selective_scan_ref(u, delta, A, B, C, Dskip, None, bias, delta_softplus=True)
        for variant in VARIANTS:
            row = dict(kind="check", shape=[b, L, D, N], dtype=str(jnp.dtype(dt)), cfg=variant)
            try:
                y = jax.jit(functools.partial(selective_scan_mosaic_gpu, delta_softplus=True,
                                              **variant))(u, delta, A, B, C, Dskip, bias)
                row["y_err"] = rel_err(y, ref)
            except Exception as e:  # noqa: BLE001 - a variant that does not compile is a row
                row["error"] = error_text(e)
            record(out_dir, **row)


def error_text(e, frames=4):
    """A failed variant's row text: the exception's type and message, and where it was
    raised (its last ``frames`` frames as file:line function), since an assertion inside
    the lowering can carry no message (run 93, jax 0.11.2)."""
    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                        for f in reversed(traceback.extract_tb(e.__traceback__)[-frames:]))
    return f"{type(e).__name__}: {str(e)[:300]} (at {where})"


def timing(out_dir, reps, inner):
    """ms a forward call (bf16, D 1536, N 16), the library's default forward (Triton) and
    the Mosaic GPU variants in the same process."""
    from benchmarks import selective_scan as bench
    for batch, L in [(8, 2048), (8, 4096), (1, 4096), (1, 16384)]:
        args = bench.inputs(L, jnp.bfloat16, batch=batch)
        u, delta, A, B, C, Dskip, _, bias = args
        ms = 1e3 * bench.time_jax(bench.ours_fwd(), *args, reps=reps, inner=inner)
        record(out_dir, kind="time", impl="pallas-triton-default", batch=batch, L=L, ms=ms)
        for variant in VARIANTS:
            row = dict(kind="time", impl="mosaic-gpu", cfg=variant, batch=batch, L=L)
            f = jax.jit(functools.partial(selective_scan_mosaic_gpu, delta_softplus=True,
                                          **variant))
            try:
                row["ms"] = 1e3 * bench.time_jax(f, u, delta, A, B, C, Dskip, bias,
                                                 reps=reps, inner=inner)
            except Exception as e:  # noqa: BLE001
                row["error"] = error_text(e)
            record(out_dir, **row)


def lower(length=4096, batch=8, dim=1536, n=16):
    """Export the variants for CUDA (no GPU needed): {variant: module size}."""
    shapes = [(batch, length, dim)] * 2 + [(dim, n), (batch, length, n), (batch, length, n),
                                           (dim,), (dim,)]
    dtypes = [jnp.bfloat16] * 2 + [jnp.float32] + [jnp.bfloat16] * 2 + [jnp.float32] * 2
    specs = [jax.ShapeDtypeStruct(s, d) for s, d in zip(shapes, dtypes)]
    sizes = {}
    for name, variant in (("pipelined", dict()), ("direct", dict(pipelined=False)),
                          ("unsegmented", dict(segments=1))):
        f = functools.partial(selective_scan_mosaic_gpu, delta_softplus=True, **variant)
        exp = jax.export.export(jax.jit(f), platforms=["cuda"])(*specs)
        sizes[name] = len(exp.mlir_module())
    return sizes


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="", help="a folder for mosaic_gpu.jsonl")
    p.add_argument("--lower", action="store_true", help="lower for CUDA only (no GPU)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--inner", type=int, default=5)
    a = p.parse_args()
    if a.lower:
        print(lower())
        return
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    check(a.out)
    timing(a.out, a.reps, a.inner)


if __name__ == "__main__":
    main()
