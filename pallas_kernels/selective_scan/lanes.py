"""The "lanes" variant of the fused selective scan: one GPU lane per channel, N states each.

Same maths and the same chunk walk as :mod:`.kernel` (see its docstring for the equations);
what changes is who holds what. The state of a program is a Python list of N vectors
``h[k]`` of shape (bd,), one per state index k, and every per-step value is a (bd,) row:

    u_t, delta_t, z_t, dout_t, y_t   (bd,)     rows ``ref[t, :]``, one element per lane
    B_t[k], C_t[k]                   scalars   ``ref[t, k]`` from B, C as (L, N) float32
                                               (cast by the caller: no conversion per use):
                                               the same address for every lane
    h[k], A2[k], g[k], dA[k]         (bd,)     k = 0 .. N-1, unrolled in Python

With bd = 32 x num_warps, Triton gives each lane one channel, so each lane owns all N states
of its channel and the sums over N (y_t, the backward's C.g, B.g and the ddelta sum) are
additions inside one thread: no shuffle, no shared memory, no barrier per step. The price is
in the backward, whose dB_t[k], dC_t[k] are sums over the block's channels, i.e. over lanes:
2N warp reductions (shuffles) per step. The forward saves the state at every chunk start
(batch, L/T, N, D) like :mod:`.kernel`; the backward recomputes the T states of a chunk in
registers (T x N values per lane, so T is small: 4 at N = 16).

Parallelism is batch x D / bd single-warp programs (384 at batch 8, D 1536): under one warp
per SM sub-partition. So the forward is cut into time segments run in parallel
(``cfg.segments``, see :func:`pallas_kernels.selective_scan.fused._forward_segmented`), which
gives the warps that hide each other's latency. GPU layout only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels.selective_scan.kernel import (LN2, LOG2E, _exp2, _fma, _sigmoid, _split_refs,
                                                  _step_delta, backward_refs, gate_dy, gate_grads,
                                                  input_names, step_output)


def _load_step(ins, names, t, n, bc=("B", "C")):
    """{name: row (bd,) at step t} as stored (no cast), and for B, C: [N scalars]."""
    row = {name: ins[name][t, :] for name in names}
    row.update({name: [ins[name][t, k] for k in range(n)] for name in bc})
    return row


def _load_chunk(ins, names, c, T, n, bc=("B", "C")):
    """{name: [its value at step t for the T steps of chunk c]} (see :func:`_load_step`):
    everything the chunk reads, issued together.

    The kernels load chunk c + 1 while chunk c computes (the values travel in the loop
    carry): with one warp per program nothing else hides a load's latency, and the compiler
    cannot move loads above the previous chunk's stores."""
    steps = [_load_step(ins, names, c * T + i, n, bc) for i in range(T)]
    return {name: [step[name] for step in steps] for name in steps[0]}


def _state_rows(ref, n):
    """The N (bd,) float32 rows of an (N, bd) ref."""
    return [ref[k, :].astype(jnp.float32) for k in range(n)]


def _segment_start(ins, A2, p, n, fast):
    """The state before segment p of a segmented forward, from the end states of segments
    0 .. p-1 run from zero (pass 1): h = 0, then h <- exp2(A2 dsum_q) h + end_q for q < p."""
    def link(q, h):
        dsum = ins["dsums"][q, 0, :]
        return [_fma(_exp2(dsum * A2[k], fast), h[k], ins["ends"][q, k, :], fast)
                for k in range(n)]
    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    return jax.lax.fori_loop(0, p, link, [zeros] * n)


def fwd_kernel_lanes(*refs, cfg, save_states: bool, end_state_only: bool = False):
    """Forward of one (batch, channel block[, time segment]), one lane per channel.

    Inputs (kernel view): u, delta, z (Lp, bd); A (N, bd) float32; B, C (Lp, N) float32; D,
    bias (1, bd); with ``cfg.segments`` = P > 1 also the end states (P-1, N, bd) and the
    delta sums (P-1, 1, bd) of pass 1, from which the program links its segment's start state.
    Outputs: out (Lp, bd); states (Lp/T, N, bd) if ``save_states`` (the state before every
    T-th step, T = cfg.chunk); last (N, bd). A loop iteration walks U = cfg.unroll steps; U
    and T divide one another.

    ``end_state_only`` (pass 1 of a segmented forward, see :mod:`.fused`): no C, z, y; the
    outputs are the state at the segment's end started from zero, last (N, bd), and the sum
    of delta over the segment, dsum (1, bd) (its decay is exp(A dsum)).

    Loads are software-pipelined by step: step i of the next iteration is loaded right after
    step i computes, into the registers step i's values free (loading a whole iteration
    ahead kept both sets live and cost ~100 register moves an iteration). With
    ``cfg.prefetch_bc`` False the 2N scalars of B, C are loaded at their step instead (a
    quarter of the registers at U = 4; the latency is left to other warps to hide).
    """
    assert not cfg.carry, "the lanes variant has no TPU layout"
    segmented = cfg.segments > 1
    names = input_names(cfg) + ["ends", "dsums"] * (segmented and not end_state_only)
    ins = _split_refs(refs, names)
    rest = refs[len(names):]
    if end_state_only:
        out_ref = states_ref = None
        last_ref, dsum_ref = rest
    else:
        out_ref = rest[0]
        states_ref = rest[1] if save_states else None
        last_ref = rest[1 + save_states]

    n = ins["A"].shape[0]
    A2 = [a * LOG2E for a in _state_rows(ins["A"], n)]
    Dskip = ins["D"][0, :].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    U, T = cfg.unroll, cfg.chunk
    n_iter = cfg.chunks_per_block * T // U
    segment = pl.program_id(2) if segmented else 0
    limit = cfg.length - segment * (n_iter * U)
    with_y = not end_state_only
    fields = ("u", "delta") + ("z",) * (cfg.has_z and with_y)
    bc = ("B", "C") if with_y else ("B",)
    ahead_bc = bc if cfg.prefetch_bc else ()
    fast = cfg.fast_math

    def body(c, carry):
        h, dsum, rows = carry
        ahead = jnp.minimum(c + 1, n_iter - 1) * U
        ys, saved, nxt = [], [], []
        for i in range(U):
            if save_states and i % T == 0:
                saved.append(h)              # the state before step c*U + i
            t = c * U + i
            row = rows[i] if cfg.prefetch_bc else {**rows[i], **_load_step(ins, (), t, n, bc)}
            d, _ = _step_delta(row["delta"], bias, t, limit, cfg)
            u = row["u"].astype(jnp.float32)
            du = d * u
            h = [_fma(_exp2(d * A2[k], fast), h[k], row["B"][k] * du, fast) for k in range(n)]
            if with_y:
                y = row["C"][0] * h[0]
                for k in range(1, n):
                    y = _fma(row["C"][k], h[k], y, fast)
                ys.append(step_output(y, u, row["z"] if cfg.has_z else None, Dskip, cfg))
            else:
                dsum = dsum + d
            nxt.append(_load_step(ins, fields, ahead + i, n, ahead_bc))
        # Stores last: a load cannot be moved above a store to another buffer.
        for i, y in enumerate(ys):
            out_ref[c * U + i, :] = y.astype(out_ref.dtype)
        if save_states and U >= T:
            for j, hs in enumerate(saved):
                for k in range(n):
                    states_ref[c * (U // T) + j, k, :] = hs[k]
        elif save_states:                    # one state every T // U iterations
            @pl.when(jax.lax.rem(c, T // U) == 0)       # (jnp's % does not lower)
            def _():
                for k in range(n):
                    states_ref[c // (T // U), k, :] = saved[0][k]
        return h, dsum, nxt

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    h0 = _segment_start(ins, A2, segment, n, fast) if "ends" in ins else [zeros] * n
    first = [_load_step(ins, fields, i, n, ahead_bc) for i in range(U)]
    h, dsum, _ = jax.lax.fori_loop(0, n_iter, body, (h0, zeros, first))
    for k in range(n):
        last_ref[k, :] = h[k]
    if end_state_only:
        dsum_ref[0, :] = dsum


def bwd_adjoint_lanes(*refs, cfg):
    """Pass 1 of a segmented backward: the adjoint a time segment passes to the one before it
    when the adjoint entering it from the right is zero, one lane per channel.

    Walking the segment last step to first, per step t and state k (as the backward does):

        g[k] <- (g[k] + C_t[k] dy_t) exp2(delta_t A2[k]),   dy_t = dout_t [silu(z_t)]

    Inputs (kernel view): the forward's (u, delta, A, B, C, D, z, bias; B, C as (Ls, N)
    float32) and dout (Ls, bd), for segment ``program_id(2) + 1`` (segment 0 needs none).
    Outputs: gpart (N, bd), the adjoint from a zero start, and gsum (1, bd), the sum of delta
    over the segment (the adjoint entering from the right decays by exp2(A2 gsum) across it).
    """
    names = input_names(cfg) + ["dout"]
    ins = _split_refs(refs, names)
    gpart_ref, gsum_ref = refs[len(names):]
    n = ins["A"].shape[0]
    A2 = [a * LOG2E for a in _state_rows(ins["A"], n)]
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    U = cfg.unroll
    n_iter = cfg.chunks_per_block * cfg.chunk // U
    limit = cfg.length - (pl.program_id(2) + 1) * (n_iter * U)
    fields = ("delta", "dout") + ("z",) * cfg.has_z

    def body(j, carry):
        g, gsum = carry
        c = n_iter - 1 - j
        rows = [_load_step(ins, fields, c * U + i, n, ("C",)) for i in range(U)]
        for i in reversed(range(U)):
            row = rows[i]
            d, _ = _step_delta(row["delta"], bias, c * U + i, limit, cfg)
            dout = row["dout"].astype(jnp.float32)
            dy = gate_dy(dout, row["z"])[0] if cfg.has_z else dout
            g = [_fma(row["C"][k], dy, g[k], cfg.fast_math) * _exp2(d * A2[k], cfg.fast_math)
                 for k in range(n)]
            gsum = gsum + d
        return g, gsum

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    g, gsum = jax.lax.fori_loop(0, n_iter, body, ([zeros] * n, zeros))
    for k in range(n):
        gpart_ref[k, :] = g[k]
    gsum_ref[0, :] = gsum


def bwd_kernel_lanes(*refs, cfg):
    """Backward of one (batch, channel block) with one lane per channel (see module doc).

    Inputs: as the forward, plus dout (Lp, bd), states (Lp/T, N, bd), dlast (N, bd).
    Outputs: du, ddelta [dz] (Lp, bd); dB, dC (Lp, N) float32 partial sums over this block's
    channels; dA (N, bd), dD (1, bd), dbias (1, bd) float32 partial sums over time.
    """
    assert not cfg.carry, "the lanes variant has no TPU layout"
    ins, row_refs, (dB_ref, dC_ref, dA_ref, dD_ref, dbias_ref), _ = backward_refs(refs, cfg)

    n = ins["A"].shape[0]
    A2 = [a * LOG2E for a in _state_rows(ins["A"], n)]
    Dskip = ins["D"][0, :].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    T, n_chunks = cfg.chunk, cfg.chunks_per_block
    fields = ("u", "delta", "dout") + ("z",) * cfg.has_z

    def load(c):
        rows = _load_chunk(ins, fields, c, T, n)
        rows["start"] = [ins["states"][c, k, :] for k in range(n)]
        return rows

    def chunk_body(j, carry):
        g, dA, dD, dbias, rows = carry
        c = n_chunks - 1 - j
        nxt = load(jnp.maximum(c - 1, 0))
        # Recompute the chunk's states; H[i] is the state before step i, a[i] its decay.
        H, a, steps = [rows["start"]], [], []
        for i in range(T):
            t = c * T + i
            d, raw = _step_delta(rows["delta"][i], bias, t, cfg.length, cfg)
            u = rows["u"][i].astype(jnp.float32)
            B_t = rows["B"][i]
            a.append([jnp.exp2(d * A2[k]) for k in range(n)])
            H.append([a[i][k] * H[i][k] + B_t[k] * (d * u) for k in range(n)])
            steps.append((t, d, raw, u, B_t))
        stores = []
        for i in reversed(range(T)):
            t, d, raw, u, B_t = steps[i]
            C_t = rows["C"][i]
            dout = rows["dout"][i].astype(jnp.float32)
            row = {}
            if cfg.has_z:
                dy, row["dz"] = gate_grads(
                    dout, lambda: sum(C_t[k] * H[i + 1][k] for k in range(n)),
                    u, rows["z"][i], Dskip, cfg)
            else:
                dy = dout
            du_t = d * u
            g = [g[k] + C_t[k] * dy for k in range(n)]
            dC = [jnp.sum(H[i + 1][k] * dy) for k in range(n)]              # over lanes
            dB = [jnp.sum(g[k] * du_t) for k in range(n)]
            gB = sum(g[k] * B_t[k] for k in range(n))
            gah = [g[k] * a[i][k] * H[i][k] for k in range(n)]
            ddelta = LN2 * sum(gah[k] * A2[k] for k in range(n)) + gB * u
            du = gB * d
            if cfg.has_D:
                du = du + Dskip * dy
                dD = dD + dy * u
            if cfg.softplus:
                ddelta = ddelta * _sigmoid(raw)
            ddelta = jnp.where(t < cfg.length, ddelta, 0.0)
            if cfg.has_bias:
                dbias = dbias + ddelta
            row["du"], row["ddelta"] = du, ddelta
            stores.append((t, row, dB, dC))
            dA = [dA[k] + gah[k] * d for k in range(n)]
            g = [g[k] * a[i][k] for k in range(n)]
        for t, row, dB, dC in stores:
            for name, value in row.items():
                row_refs[name][t, :] = value.astype(row_refs[name].dtype)
            for k in range(n):
                dB_ref[t, k] = dB[k]
                dC_ref[t, k] = dC[k]
        return g, dA, dD, dbias, nxt

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    init = (_state_rows(ins["dlast"], n), [zeros] * n, zeros, zeros)
    _, dA, dD, dbias, _ = jax.lax.fori_loop(0, n_chunks, chunk_body,
                                            init + (load(n_chunks - 1),))
    for k in range(n):
        dA_ref[k, :] = dA[k]
    dD_ref[0, :] = dD
    dbias_ref[0, :] = dbias
