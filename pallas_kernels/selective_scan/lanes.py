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
per SM sub-partition. The forward gets more warps either way: its channel's states go on
S lanes (``cfg.split``, :class:`Lanes`: S x the programs, one pass), or time is cut into
segments run in parallel (``cfg.segments``, see
:func:`pallas_kernels.selective_scan.fused._forward_segmented`: a second pass). GPU layout only.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels.selective_scan.kernel import (LN2, LOG2E, _exp2, _fma, _sigmoid, _split_refs,
                                                  _step_delta, backward_refs, gate_dy, gate_grads,
                                                  input_names, step_input_grads, step_output,
                                                  store_row, sum_names, tile_row)


class Lanes:
    """How the lanes kernels hold a channel's N states: on S lanes, J = N / S states a lane.

    S = 1: a row (u_t, delta_t, y_t, ...) is a (bd,) vector, a state group h[k] (bd,), B_t[k]
    a scalar; the N-axis of a ref is indexed k = 0 .. N-1. S > 1: a row is (1, bd), a state
    group h[j] is (S, bd) (element [s, c] is state k = s J + j of channel c), B_t[j] an
    (S, 1) column, and refs with an N axis are viewed with it split as (S, J) (the caller
    reshapes the arrays; k = s J + j is that reshape). Triton gives an (S, bd) tile the layout
    threadsPerWarp [S, 32 / S] (benchmarks/triton_ir.py: no layout conversion), so each lane
    holds J states of one channel, and y_t's sum over N is J - 1 adds in a lane and log2 S
    shuffles. Everything else is elementwise and written once for both.
    """

    def __init__(self, split, n):
        self.S, self.J = split, n // split

    def row(self, ref, t):
        """Step t of a (L, bd) ref."""
        return ref[t, :] if self.S == 1 else ref[pl.ds(t, 1), :]

    def put_row(self, ref, t, value):
        if self.S == 1:
            ref[t, :] = value
        else:
            ref[pl.ds(t, 1), :] = value

    def vec(self, ref, *lead):
        """A (..., 1, bd) ref's row (D, bias, a delta sum)."""
        row = 0 if self.S == 1 else pl.ds(0, 1)
        return ref[(*lead, row, slice(None))]

    def put_vec(self, ref, value):
        if self.S == 1:
            ref[0, :] = value
        else:
            ref[...] = value

    def bc(self, ref, t, j):
        """B_t or C_t of state group j from a (L, N) ref ((L, S, J) for S > 1)."""
        return ref[t, j] if self.S == 1 else ref[t, :, pl.ds(j, 1)]

    def states(self, ref, *lead):
        """The J state groups of a (..., N, bd) ref ((..., S, J, bd)), float32."""
        if self.S == 1:
            return [ref[(*lead, k, slice(None))].astype(jnp.float32) for k in range(self.J)]
        return [ref[(*lead, slice(None), j, slice(None))].astype(jnp.float32)
                for j in range(self.J)]

    def put_states(self, ref, h, *lead):
        for j in range(self.J):
            if self.S == 1:
                ref[(*lead, j, slice(None))] = h[j]
            else:
                ref[(*lead, slice(None), j, slice(None))] = h[j]

    def zero_row(self, bd):
        return jnp.zeros((bd,) if self.S == 1 else (1, bd), jnp.float32)

    def total(self, y):
        """Sum over the S lanes of a channel: (S, bd) -> (1, bd)."""
        return y if self.S == 1 else jnp.sum(y, axis=0, keepdims=True)

    def tile_row(self, tile, s, fast):
        """Row s of an (S, bd) tile (row r: a value of step t + r, held by lane r of each
        channel) on all S lanes of its channel: the row's value of step t + s.

        ``fast`` (compiled Triton) with S x bd = 32 (one element a lane): one
        ``shfl.sync.idx`` a value, each lane reading lane (s, c) of the warp's (S, bd)
        layout; else a sum over the S lanes of the tile masked to row s (log2 S shuffles and
        adds, the same value), returned as a (1, bd) row."""
        if fast and tile.shape[0] * tile.shape[1] == 32:
            return _shfl_row(tile, s)
        return tile_row(tile, s)


def _shfl_row(tile, s):
    """Row s of a one-warp (S, bd) float32 tile, S x bd = 32, broadcast over the rows by a
    warp shuffle: Triton lays such a tile out as threadsPerWarp [S, bd], order [1, 0], so
    element (r, c) is lane r bd + c and row s of column c is lane s bd + c (compiled Triton
    only; the compiled GPU tests check it against the reference)."""
    from jax.experimental.pallas import triton as pltriton
    S, bd = tile.shape
    assert S * bd == 32, f"a one-warp tile has 32 elements, got {tile.shape}"
    src = s * bd + jax.lax.broadcasted_iota(jnp.int32, tile.shape, 1)
    return pltriton.elementwise_inline_asm(
        "shfl.sync.idx.b32 $0, $1, $2, 0x1f, 0xffffffff;", args=[tile, src],
        constraints="=r,r,r", pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(tile.shape, jnp.float32)])[0]


def _load_step(ins, names, t, lanes, bc=("B", "C")):
    """{name: row at step t} as stored (no cast), and for B, C: [J scalars or columns];
    "<x>_tile": the (S, bd) rows t .. t + S - 1 of x (z: :func:`_gate_tile`; delta: the
    delta tile of :func:`fwd_kernel_lanes`)."""
    row = {name: (ins[name[:-5]][pl.ds(t, lanes.S), :] if name.endswith("_tile")
                  else lanes.row(ins[name], t)) for name in names}
    row.update({name: [lanes.bc(ins[name], t, j) for j in range(lanes.J)] for name in bc})
    return row


def _load_chunk(ins, names, c, T, lanes, bc=("B", "C")):
    """{name: [its value at step t for the T steps of chunk c]} (see :func:`_load_step`):
    everything the chunk reads, issued together.

    The kernels load chunk c + 1 while chunk c computes (the values travel in the loop
    carry): with one warp per program nothing else hides a load's latency, and the compiler
    cannot move loads above the previous chunk's stores."""
    steps = [_load_step(ins, names, c * T + i, lanes, bc) for i in range(T)]
    return {name: [step[name] for step in steps] for name in steps[0]}


def _gate_tile(ys, ztile, S):
    """out for S consecutive steps as one (S, bd) tile: row s is (y + D u) of step s (the
    (1, bd) rows ys, the same on a channel's S lanes) times silu(z) of that step. Lane s of a
    channel computes only its step's gate: one sigmoid and one z load for S steps, where
    gating each row costs S of each."""
    rows = jax.lax.broadcasted_iota(jnp.int32, ztile.shape, 0)
    tile = ys[0]
    for s in range(1, S):
        tile = jnp.where(rows == s, ys[s], tile)
    zt = ztile.astype(jnp.float32)
    return tile * zt * _sigmoid(zt)


def fwd_kernel_lanes(*refs, cfg, save_states: bool, end_state_only: bool = False):
    """Forward of one (batch, channel block[, time segment]), S = cfg.split lanes a channel.

    Inputs (kernel view): u, delta, z (Lp, bd); A (N, bd) float32; B, C (Lp, N) float32; D,
    bias (1, bd); with ``cfg.segments`` = P > 1 also the state entering the program's
    segment, start (N, bd) (linked from pass 1's end states by :func:`.kernel.link_kernel`).
    With ``cfg.accumulate`` also out_sum (Lp, bd) float32, the running sum that out is added
    to (aliased to out; loaded with u, delta, ``cfg.row_ahead`` iterations ahead).
    Outputs: out (Lp, bd); states (Lp/T, N, bd) if ``save_states`` (the state before every
    K-th step, K = cfg.state_stride: T = cfg.chunk times cfg.state_every); last (N, bd).
    Every N axis is (S, J) for S > 1 (:class:`Lanes`).
    A loop iteration walks U = cfg.unroll steps; U divides T and K or they divide U.

    ``end_state_only`` (pass 1 of a segmented forward, see :mod:`.fused`): no C, z, y; the
    outputs are the state at the segment's end started from zero, last (N, bd), and the sum
    of delta over the segment, dsum (1, bd) (its decay is exp(A dsum)).

    Loads are software-pipelined by step: step i of iteration c + 1 is loaded right after step
    i computes, into the registers step i's values free (loading a whole iteration ahead kept
    both sets live and cost ~100 register moves an iteration). u, delta (z) are loaded
    ``cfg.row_ahead`` iterations ahead (they come from DRAM; B, C from L2). With
    ``cfg.prefetch_bc`` False the B, C values are loaded at their step instead (fewer
    registers; the latency is left to other warps to hide).

    With ``cfg.delta_tile`` (split S > 1, U a multiple of S) delta is loaded and turned into
    delta_t (bias, softplus, mask) on (S, bd) tiles of S steps, lane s of a channel taking
    step t + s, and each step's row is handed to the channel's S lanes by a warp shuffle
    (:meth:`Lanes.tile_row`): one softplus a channel-step instead of S (the channel's lanes
    computed the same delta_t each).
    """
    assert not cfg.carry, "the lanes variant has no TPU layout"
    segmented = cfg.segments > 1
    names = input_names(cfg) + ["start"] * (segmented and not end_state_only)
    ins = _split_refs(refs, names)
    rest = refs[len(names):]
    if end_state_only:
        out_ref = states_ref = None
        last_ref, dsum_ref = rest
    else:
        out_ref = rest[0]
        states_ref = rest[1] if save_states else None
        last_ref = rest[1 + save_states]

    lanes = Lanes(cfg.split, math.prod(ins["A"].shape[:-1]))        # A: (N, bd) or (S, J, bd)
    J = lanes.J
    A2 = [a * LOG2E for a in lanes.states(ins["A"])]
    Dskip = lanes.vec(ins["D"]).astype(jnp.float32) if cfg.has_D else None
    bias = lanes.vec(ins["bias"]).astype(jnp.float32) if cfg.has_bias else None
    U, T, K = cfg.unroll, cfg.chunk, cfg.state_stride
    n_iter = cfg.chunks_per_block * T // U
    segment = pl.program_id(2) if segmented else 0
    limit = cfg.length - segment * (n_iter * U)
    with_y = not end_state_only
    # (S, bd) tiles of S steps, one step a lane: split lanes, whole tiles an iteration
    tiled = lanes.S > 1 and U % lanes.S == 0
    tile_gate = cfg.has_z and with_y and tiled          # z gate on tiles, else on each row
    delta_tile = cfg.delta_tile and tiled               # delta (bias, softplus) on tiles
    fields = ("u",) + ("delta",) * (not delta_tile)
    fields += ("z",) * (cfg.has_z and with_y and not tile_gate)
    tiles = ("z_tile",) * tile_gate + ("delta_tile",) * delta_tile
    # the running sum of out (accumulate) in the shape of out's stores: tiles or rows
    sums = sum_names(cfg, backward=False) if with_y else ()
    fields += sums * (not tile_gate)
    tiles += tuple(f"{name}_tile" for name in sums) * tile_gate

    out_cfg = dataclasses.replace(cfg, has_z=cfg.has_z and not tile_gate)   # step_output's gate

    def fields_at(i):
        return fields + tiles * (i % lanes.S == 0)
    bc = ("B", "C") if with_y else ("B",)
    ahead_bc = bc if cfg.prefetch_bc else ()
    R = max(1, cfg.row_ahead)
    fast = cfg.fast_math

    def iteration(c):
        return jnp.minimum(c, n_iter - 1) * U

    def body(c, carry):
        # queue[r]: the rows of iteration c + r (r < R); queue[0] also holds its B, C.
        h, dsum, queue = carry
        rows_now = queue[0]
        far, near = iteration(c + R), iteration(c + 1)
        ys, saved, new, new_bc = [], [], [], []
        for i in range(U):
            if save_states and i % K == 0:
                saved.append(h)              # the state before step c*U + i
            t = c * U + i
            row = rows_now[i]
            if not cfg.prefetch_bc:
                row = {**row, **_load_step(ins, (), t, lanes, bc)}
            if delta_tile:
                if i % lanes.S == 0:         # steps t .. t + S - 1, lane r of a channel: t + r
                    steps = t + jax.lax.broadcasted_iota(jnp.int32, (lanes.S, 1), 0)
                    d_tile, _ = _step_delta(row["delta_tile"], bias, steps, limit, cfg)
                    if not with_y:           # dsum: an (S, bd) tile, summed over S at the end
                        dsum = dsum + d_tile
                d = lanes.tile_row(d_tile, i % lanes.S, fast)
            else:
                d, _ = _step_delta(row["delta"], bias, t, limit, cfg)
                if not with_y:
                    dsum = dsum + d
            u = row["u"].astype(jnp.float32)
            du = d * u
            h = [_fma(_exp2(d * A2[j], fast), h[j], row["B"][j] * du, fast) for j in range(J)]
            if with_y:
                y = row["C"][0] * h[0]
                for j in range(1, J):
                    y = _fma(row["C"][j], h[j], y, fast)
                ys.append(step_output(lanes.total(y), u, row["z"] if out_cfg.has_z else None,
                                      Dskip, out_cfg))
            new.append(_load_step(ins, fields_at(i), far + i, lanes, ()))
            new_bc.append(_load_step(ins, (), near + i, lanes, ahead_bc))
        queue = queue[1:] + [new]
        queue[0] = [{**rows, **b} for rows, b in zip(queue[0], new_bc)]
        # Stores last: a load cannot be moved above a store to another buffer.
        if tile_gate:
            for i in range(0, U, lanes.S):
                out = _gate_tile(ys[i:i + lanes.S], rows_now[i]["z_tile"], lanes.S)
                if sums:
                    out = out + rows_now[i]["out_sum_tile"]
                out_ref[pl.ds(c * U + i, lanes.S), :] = out.astype(out_ref.dtype)
        else:
            for i, y in enumerate(ys):
                if sums:
                    y = y + rows_now[i]["out_sum"]
                lanes.put_row(out_ref, c * U + i, y.astype(out_ref.dtype))
        if save_states and U >= K:
            for j, hs in enumerate(saved):
                lanes.put_states(states_ref, hs, c * (U // K) + j)
        elif save_states:                    # one state every K // U iterations
            @pl.when(jax.lax.rem(c, K // U) == 0)       # (jnp's % does not lower)
            def _():
                lanes.put_states(states_ref, saved[0], c // (K // U))
        return h, dsum, queue

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    h0 = lanes.states(ins["start"]) if "start" in ins else [zeros] * J
    queue = [[_load_step(ins, fields_at(i), iteration(r) + i, lanes, ahead_bc if r == 0 else ())
              for i in range(U)] for r in range(R)]
    dsum0 = zeros if delta_tile else lanes.zero_row(zeros.shape[-1])
    h, dsum, _ = jax.lax.fori_loop(0, n_iter, body, (h0, dsum0, queue))
    lanes.put_states(last_ref, h)
    if end_state_only:
        lanes.put_vec(dsum_ref, lanes.total(dsum) if delta_tile else dsum)


def bwd_adjoint_lanes(*refs, cfg):
    """Pass 1 of a segmented backward: the adjoint a time segment passes to the one before it
    when the adjoint entering it from the right is zero, one lane per channel.

    Walking the segment last step to first, per step t and state k (as the backward does):

        g[k] <- (g[k] + C_t[k] dy_t) exp2(delta_t A2[k]),   dy_t = dout_t [silu(z_t)]

    Inputs (kernel view): the forward's (u, delta, A, B, C, D, z, bias; B, C as (N, Ls)
    float32, the tiles backward's layout; B unused) and dout (Ls, bd), for segment
    ``program_id(2) + 1`` (segment 0 needs none).
    Outputs: gpart (N, bd), the adjoint from a zero start, and gsum (1, bd), the sum of delta
    over the segment (the adjoint entering from the right decays by exp2(A2 gsum) across it).
    An iteration's U rows (delta, dout, z from DRAM, C from L2) are loaded while the
    iteration before runs, as in the forward.
    """
    names = input_names(cfg) + ["dout"]
    ins = _split_refs(refs, names)
    gpart_ref, gsum_ref = refs[len(names):]
    n = ins["A"].shape[0]
    lanes = Lanes(1, n)
    A2 = [a * LOG2E for a in lanes.states(ins["A"])]
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    U = cfg.unroll
    n_iter = cfg.chunks_per_block * cfg.chunk // U
    limit = cfg.length - (pl.program_id(2) + 1) * (n_iter * U)
    fields = ("delta", "dout") + ("z",) * cfg.has_z

    def load(c):
        rows = [_load_step(ins, fields, c * U + i, lanes, ()) for i in range(U)]
        for i, row in enumerate(rows):
            row["C"] = [ins["C"][k, c * U + i] for k in range(n)]
        return rows

    def body(j, carry):
        g, gsum, rows = carry
        c = n_iter - 1 - j
        nxt = load(jnp.maximum(c - 1, 0))        # the next iteration's rows, while this one runs
        for i in reversed(range(U)):
            row = rows[i]
            d, _ = _step_delta(row["delta"], bias, c * U + i, limit, cfg)
            dout = row["dout"].astype(jnp.float32)
            dy = gate_dy(dout, row["z"])[0] if cfg.has_z else dout
            g = [_fma(row["C"][k], dy, g[k], cfg.fast_math) * _exp2(d * A2[k], cfg.fast_math)
                 for k in range(n)]
            gsum = gsum + d
        return g, gsum, nxt

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    g, gsum, _ = jax.lax.fori_loop(0, n_iter, body, ([zeros] * n, zeros, load(n_iter - 1)))
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
    lanes = Lanes(1, n)
    A2 = [a * LOG2E for a in lanes.states(ins["A"])]
    Dskip = ins["D"][0, :].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    T, n_chunks = cfg.chunk, cfg.chunks_per_block
    fields = ("u", "delta", "dout") + ("z",) * cfg.has_z

    def load(c):
        rows = _load_chunk(ins, fields, c, T, lanes)
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
            du, ddelta, dD, dbias = step_input_grads(
                LN2 * sum(gah[k] * A2[k] for k in range(n)), gB, d, u, dy,
                lambda: _sigmoid(raw), t, cfg.length, Dskip, dD, dbias, cfg)
            row["du"], row["ddelta"] = du, ddelta
            stores.append((t, row, dB, dC))
            dA = [dA[k] + gah[k] * d for k in range(n)]
            g = [g[k] * a[i][k] for k in range(n)]
        for t, row, dB, dC in stores:
            for name, value in row.items():
                store_row(ins, row_refs[name], name, (t, slice(None)), value, cfg)
            for k in range(n):
                dB_ref[t, k] = dB[k]
                dC_ref[t, k] = dC[k]
        return g, dA, dD, dbias, nxt

    zeros = jnp.zeros(A2[0].shape, jnp.float32)
    init = (lanes.states(ins["dlast"]), [zeros] * n, zeros, zeros)
    _, dA, dD, dbias, _ = jax.lax.fori_loop(0, n_chunks, chunk_body,
                                            init + (load(n_chunks - 1),))
    for k in range(n):
        dA_ref[k, :] = dA[k]
    dD_ref[0, :] = dD
    dbias_ref[0, :] = dbias
