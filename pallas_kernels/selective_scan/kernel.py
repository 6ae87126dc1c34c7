"""Pallas kernels of the fused selective scan: forward and backward, one chunk body each.

Layout inside a kernel (one program per (batch, block of channels)):

    state  h      (N, bd) float32       N padded to a power of two, bd channels
    row    u_t    (bd,)                 one time step of u, delta, z, out (channels-last)
    row    B_t    (N,)                  one time step of B, C (the block's group)

Time is walked in chunks of ``T`` steps; inside a chunk the steps are unrolled in Python,
so the loads of a chunk do not wait on the recurrence. Per step (log2-scaled A, A2 = A*log2 e):

    delta_t = softplus(delta_t + delta_bias)          (each optional; 0 past the true L)
    h_t     = exp2(delta_t * A2) * h_{t-1} + B_t (delta_t u_t)
    y_t     = sum_n C_t[n] h_t[n] + D u_t,   out_t = y_t * silu(z_t)

The forward optionally writes the state at every chunk start (batch, L/T, N, D): that is all
the backward keeps, recomputing the T states of a chunk in registers before walking it
backwards with the adjoint g_t = dL/dh_t:

    g_t        = exp2(delta_{t+1} A2) g_{t+1} + C_t dy_t
    dC_t[n]    = sum_d dy_t h_t[n],         dB_t[n] = sum_d g_t (delta_t u_t)
    du_t       = delta_t sum_n g_t B_t + D dy_t
    ddelta_t   = sum_n g_t A exp(delta_t A) h_{t-1} + u_t sum_n g_t B_t
    dA        += g_t delta_t exp(delta_t A) h_{t-1}

dB, dC are written per channel block (batch, n_blocks, L, N) and summed by the caller; dA,
dD and d(delta_bias) per (batch, block) likewise. Nothing of size (batch, L, D, N) is ever
stored. The kernels know their platform only through ``carry`` (see :func:`fwd_kernel`).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

LOG2E = math.log2(math.e)
LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """Static description of one padded problem.

    length: true L (steps at or past it are masked); chunk: T steps unrolled per chunk;
    chunks_per_block: chunks in one time block of a program (all of them on GPU);
    has_*: which optional inputs exist; softplus: apply softplus to delta;
    carry: state carried between time blocks of the grid in a scratch buffer (TPU);
    reverse_time: the grid's time axis walks the time blocks last to first (backward);
    unroll: steps per loop iteration of the lanes forward (0: chunk), see :mod:`.lanes`;
    segments: time segments of the lanes forward run in parallel (grid axis 2), see
    :mod:`.fused`; fast_math: approximate GPU instructions where jnp has none (compiled
    Triton only: lg2.approx in softplus); prefetch_bc: the lanes forward loads B, C an
    iteration ahead (in the loop carry) rather than at their step; row_ahead: iterations
    ahead the lanes forward loads u, delta (z); split: lanes a channel in the lanes forward
    (its N axes viewed as (split, N / split)), see :class:`.lanes.Lanes`; masked: the padded
    length exceeds L, so steps at or past L are masked (False: every step is a true one, and
    the kernels skip the per-step compare); delta_tile: the split lanes forward computes
    delta (bias, softplus) on (split, bd) tiles of split steps, one step a lane, and hands
    each step's row to the channel's lanes (see :func:`.lanes.fwd_kernel_lanes`); in the
    tiles backward, delta (bias, softplus, sigmoid) on a (T, bd) tile a chunk (see
    :func:`bwd_kernel_tiles`); state_every: m, the forward saves the state before every
    m-th chunk (every K = m T steps) and the tiles backward recomputes a block's m chunk
    starts before walking it (see :func:`bwd_kernel_tiles`; 1: every chunk); bc_atomic:
    the tiles backward adds its dB, dC tiles into one (N, L) sum a group by atomic adds
    (outputs aliased to zeroed inputs ``dB_init``, ``dC_init``), not into partials a block;
    accumulate: a kernel adds its (L, bd) outputs (:func:`row_names`: the forward's out, the
    backward's du, ddelta [dz]) to the running sums it reads from the inputs ``out_sum``,
    ``du_sum``, ``ddelta_sum`` [``dz_sum``], its outputs aliased to them (the state groups
    run one after another, see :func:`store_row`).
    """
    length: int
    chunk: int
    chunks_per_block: int
    has_D: bool
    has_z: bool
    has_bias: bool
    softplus: bool
    carry: bool
    reverse_time: bool = False
    unroll: int = 0
    segments: int = 1
    fast_math: bool = False
    prefetch_bc: bool = True
    row_ahead: int = 1
    split: int = 1
    masked: bool = True
    delta_tile: bool = False
    state_every: int = 1
    bc_atomic: bool = False
    accumulate: bool = False

    @property
    def state_stride(self):
        """K = m T: steps between the states the forward saves."""
        return self.chunk * self.state_every


def _ptx(asm, *args):
    """One float32 PTX instruction applied elementwise (compiled Triton only); the arguments
    (arrays or scalars) are broadcast to one shape."""
    shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in args))
    args = [jnp.broadcast_to(jnp.asarray(x, jnp.float32), shape) for x in args]
    return pltriton.elementwise_inline_asm(
        asm, args=args, constraints=",".join(["=r"] + ["r"] * len(args)), pack=1,
        result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.float32)])[0]


def _log2(x, fast):
    """log2(x); ``fast``: the GPU's lg2.approx (one instruction: compiled Triton only; jnp's
    log2 lowers there to a libdevice logf and a division, ~25 instructions)."""
    return _ptx("lg2.approx.ftz.f32 $0, $1;", x) if fast else jnp.log2(x)


def _exp2(x, fast):
    """2^x; ``fast``: the GPU's ex2.approx.ftz, one MUFU instruction (compiled Triton only).
    jnp's exp2 lowers there to libdevice's exp2f, which wraps the MUFU in a compare and two
    multiplies to keep denormal results (NOTES.md, v9: 10% of the forward's instructions);
    with ftz a result under 2^-126 is 0, as in a state that has decayed away."""
    return _ptx("ex2.approx.ftz.f32 $0, $1;", x) if fast else jnp.exp2(x)


def _fma(a, b, c, fast):
    """a * b + c; ``fast``: one fused multiply-add (fma.rn.f32). The Triton inside jaxlib
    does not contract a * b + c itself: the forward it compiled had no FFMA at all (NOTES.md,
    v9), so each h_t and y_t term cost a multiply and an add."""
    return _ptx("fma.rn.f32 $0, $1, $2, $3;", a, b, c) if fast else a * b + c


def _softplus(x, fast=False):
    """softplus(x) = log(1 + e^x) (x itself above 20, as mamba), with e = 2^(x log2 e):

        e > 1/16:  log2(1 + e) ln 2
        else:      e - e^2/2 + e^3/3 - e^4/4 + e^5/5    (|error| < e^6/6: relative < 2e-7)

    the series where 1 + e would lose e's low bits (mamba's delta is often ~1e-3). Relative
    error < 1e-6 for |x| < 10 (2e-6 at |x| = 40, from rounding x log2 e; with ``fast`` a
    further ~3e-6 from lg2.approx's absolute 2^-22 over log2(1 + e) > 0.087);
    ~15 instructions against ~45 for log1p(exp(x)) in a compiled Triton kernel."""
    e = _exp2(jnp.minimum(x, 20.0) * LOG2E, fast)
    big = _log2(1.0 + e, fast) * LN2
    small = e * (1.0 + e * (-0.5 + e * (1.0 / 3.0 + e * (-0.25 + e * 0.2))))
    return jnp.where(x > 20.0, x, jnp.where(e > 0.0625, big, small))


def _sigmoid(x):
    """1 / (1 + e^-x), with e^-x = 2^(-x log2 e) (ex2.approx on a GPU, not libdevice expf)."""
    return 1.0 / (1.0 + jnp.exp2(-x * LOG2E))


def _step_delta(raw, bias, t, limit, cfg):
    """delta_t (bd,) float32 from a loaded row: bias, softplus, and 0 at t >= limit (past L).
    ``raw`` may be a tile of several steps, with ``t`` their step indices broadcast to it.

    Returns (delta_t, the pre-softplus value)."""
    raw = raw.astype(jnp.float32)
    if cfg.has_bias:
        raw = raw + bias
    d = _softplus(raw, cfg.fast_math) if cfg.softplus else raw
    return past_length(d, t, limit, cfg), raw


def past_length(x, t, limit, cfg):
    """x where step t < limit, 0 past the true L (x itself when nothing is padded)."""
    return jnp.where(t < limit, x, 0.0) if cfg.masked else x


LINK_AHEAD = 16    # parts the link kernel loads ahead of their use (4: 9.1 us, run 57)


def link_kernel(*refs, reverse: bool, fast: bool):
    """The state entering each time segment of a segmented pass, one (batch, channel block,
    state block) a program, from what a first pass computed on each segment alone (from a
    zero state): its part e_q (n, bd) and its sum of delta s_q (1, bd) (the segment's decay
    is exp(A s_q)). With Q parts:

        forward  (``reverse`` False)  h_0 = 0,       h_{q+1} = exp(A s_q) h_q + e_q
                 e_q: the end state of segment q;           out[q] = h_q, q = 0 .. Q
        backward (``reverse`` True)   g_Q = dlast,   g_q = exp(A s_q) g_{q+1} + e_q
                 e_q: the adjoint segment q + 1 hands back; out[q] = g_q, q = 0 .. Q

    Refs: A (n, bd) float32, [dlast (n, bd) with ``reverse``], parts (Q, n, bd), sums
    (Q, 1, bd); out (Q + 1, n, bd).

    A link is an exp2 of the part's decay and one FMA into the state; the parts are loaded
    LINK_AHEAD links ahead of their use (in the loop carry). Run apart from the passes, the
    serial walk over the Q parts is paid once a channel block, not by every segment's
    program before its first step (the last one walked all Q: batch 1 L 4096, pass 2 81 ->
    67 us without its walk, for a 6 us link launch; benchmarks/NOTES.md v27).
    """
    if reverse:
        A_ref, first_ref, parts_ref, sums_ref, out_ref = refs
    else:
        A_ref, parts_ref, sums_ref, out_ref = refs
    A2 = A_ref[...].astype(jnp.float32) * LOG2E
    count = parts_ref.shape[0]

    def index(i):                                # part linked at step i (clamped: loaded ahead)
        i = jnp.minimum(i, count - 1)
        return count - 1 - i if reverse else i

    def load(i):
        return sums_ref[index(i)], parts_ref[index(i)]

    def body(i, carry):
        state, queue = carry
        dsum, part = queue[0]
        state = _fma(_exp2(dsum * A2, fast), state, part, fast)
        out_ref[index(i) if reverse else i + 1] = state
        return state, queue[1:] + [load(i + LINK_AHEAD)]

    state = (first_ref[...].astype(jnp.float32) if reverse
             else jnp.zeros(A2.shape, jnp.float32))
    out_ref[count if reverse else 0] = state
    queue = [load(i) for i in range(LINK_AHEAD)]
    jax.lax.fori_loop(0, count, body, (state, queue))


def _load_chunk(ins, names, c, T):
    """{name: [row t for the T steps of chunk c]}, as stored (no cast).

    All loads of a chunk are issued together, ahead of any store: the compiler cannot move a
    load across a store to another output (it cannot prove they do not alias), so loads
    interleaved with stores would each wait a full memory latency."""
    return {name: [ins[name][c * T + i, :] for i in range(T)] for name in names}


def _time_offset(cfg):
    """Global index of the first step of this program's time block (TPU grid axis 2).

    Call at the kernel's top level (the interpreter binds program_id only there)."""
    if not cfg.carry:
        return 0
    block = pl.program_id(2)
    if cfg.reverse_time:
        block = pl.num_programs(2) - 1 - block
    return block * (cfg.chunk * cfg.chunks_per_block)


def _column(x):
    """(N,) -> (N, 1), to broadcast along channels."""
    return x[:, None]


def _row(x):
    """(bd,) -> (1, bd), to broadcast along the state."""
    return x[None, :]


def _split_refs(refs, names):
    """Name a flat tuple of refs: {name: ref} for the names given, in order."""
    return dict(zip(names, refs))


def input_names(cfg, backward=False):
    """Kernel inputs in order; optional ones only when present."""
    names = ["u", "delta", "A", "B", "C"]
    names += ["D"] * cfg.has_D + ["z"] * cfg.has_z + ["bias"] * cfg.has_bias
    if backward:
        names += ["dout", "states", "dlast"]
        names += ["dB_init", "dC_init"] * cfg.bc_atomic      # aliased to dB, dC (tiles)
    names += sum_names(cfg, backward)
    return names


def row_names(cfg, backward=True):
    """A kernel's (L, bd) outputs, in order: the backward's du, ddelta [, dz]; the
    forward's out."""
    return ("du", "ddelta") + ("dz",) * cfg.has_z if backward else ("out",)


def sum_names(cfg, backward=True):
    """The inputs of the running sums that ``cfg.accumulate`` adds :func:`row_names` to
    (none without it)."""
    return tuple(f"{name}_sum" for name in row_names(cfg, backward)) * cfg.accumulate


def store_row(ins, ref, name, index, value, cfg, loaded=None):
    """ref[index] = value in ref's dtype; with cfg.accumulate and ``name`` one of
    :func:`row_names`, plus the running sum ``ins[name + "_sum"][index]`` (the output is
    aliased to that input, so the program reads its own block before it overwrites it), or
    ``loaded``, that sum loaded earlier (the tiles backward loads it a chunk ahead: loaded
    at the store, its latency cost the serial groups' backward 4-8%, run 85)."""
    if cfg.accumulate and name in row_names(cfg):
        value = value + (ins[f"{name}_sum"][index] if loaded is None else loaded)
    ref[index] = value.astype(ref.dtype)


def _plus_out_sum(ys, rows, cfg):
    """A forward chunk's T out rows plus the running sum's rows (``out_sum``, loaded a
    chunk ahead with the chunk's other rows) with cfg.accumulate; else as they are."""
    return [y + rows["out_sum"][i] for i, y in enumerate(ys)] if cfg.accumulate else ys


def backward_refs(refs, cfg):
    """Split a backward kernel's refs: (inputs by name, {"du", "ddelta", "dz"} output refs
    (dz None without z), [dB, dC, dA, dD, dbias] refs, scratch refs (TPU carry))."""
    names = input_names(cfg, backward=True)
    ins = _split_refs(refs, names)
    outs = list(refs[len(names):])
    rows = {"du": outs.pop(0), "ddelta": outs.pop(0)}
    rows["dz"] = outs.pop(0) if cfg.has_z else None
    return ins, rows, outs[:5], outs[5:]


def step_output(y, u, z_raw, Dskip, cfg):
    """out_t = (y_t + D u_t) silu(z_t) from y_t = C_t . h_t (each part when present)."""
    if cfg.has_D:
        y = y + Dskip * u
    if cfg.has_z:
        zt = z_raw.astype(jnp.float32)
        y = y * zt * _sigmoid(zt)
    return y


def gate_dy(dout, z_raw):
    """dy = dout silu(z) (the gradient reaching y through the z gate), and sigmoid(z)."""
    zt = z_raw.astype(jnp.float32)
    sz = _sigmoid(zt)
    return dout * zt * sz, sz


def step_input_grads(ddelta_h, gB, d, u, dy, sig_of, t, limit, Dskip, dD, dbias, cfg):
    """One step's du, ddelta and the dD, dbias sums, from the adjoint's parts.

    ddelta_h: sum_n g_n exp(delta A_n) h_{t-1,n} A_n; gB: sum_n g_n B_t,n. Then du = gB delta
    (+ D dy), ddelta = ddelta_h + gB u (x sigmoid(raw delta) with softplus, ``sig_of()``
    called then), 0 past ``limit``; dD += dy u, dbias += ddelta. Returns (du, ddelta, dD,
    dbias); each backward kernel (v2, tiles, lanes) calls it on its own shapes."""
    ddelta = ddelta_h + gB * u
    du = gB * d
    if cfg.has_D:
        du = du + Dskip * dy
        dD = dD + dy * u
    if cfg.softplus:
        ddelta = ddelta * sig_of()
    ddelta = past_length(ddelta, t, limit, cfg)
    if cfg.has_bias:
        dbias = dbias + ddelta
    return du, ddelta, dD, dbias


def gate_grads(dout, y_of, u, z_raw, Dskip, cfg):
    """(dy, dz) through out = (y + D u) silu(z); ``y_of()`` computes y = C . h (called after
    dy, the order the measured kernels were emitted in). Call only with z present."""
    zt = z_raw.astype(jnp.float32)
    dy, sz = gate_dy(dout, zt)
    y = y_of()
    if cfg.has_D:
        y = y + Dskip * u
    return dy, dout * y * sz * (1.0 + zt * (1.0 - sz))


def save_chunk_state(states_ref, c, h, cfg):
    """The state before chunk c into states_ref, at every cfg.state_every-th chunk."""
    m = cfg.state_every
    if m == 1:
        states_ref[c] = h
        return

    @pl.when(jax.lax.rem(c, m) == 0)
    def _():
        states_ref[c // m] = h


def forward_chunks(ins, h, cfg, load, step, store, states_ref, bias, Dskip, limit):
    """The forward's walk over a program's chunks of T = cfg.chunk steps from state h, shared
    by the v2 and tiles kernels; returns the last state. Each chunk prefetches the next
    one's rows (``load(ins, names, c, T)``: {name: [T rows]}; the last chunk reloads itself)
    before any store, saves its start into ``states_ref`` (None: no states saved), runs
    ``step(h, delta_t, u_t, B_t, C_t) -> (h, y_t)`` (float32) for its T steps and hands the
    outputs (D skip, z gate and cfg.accumulate's running sum applied) to ``store(c, ys)``."""
    T, n_chunks = cfg.chunk, cfg.chunks_per_block
    fields = ("u", "delta", "B", "C") + ("z",) * cfg.has_z + sum_names(cfg, False)

    def chunk_body(c, carry):
        h, rows = carry
        nxt = load(ins, fields, jnp.minimum(c + 1, n_chunks - 1), T)
        if states_ref is not None:
            save_chunk_state(states_ref, c, h, cfg)
        ys = []
        for i in range(T):
            t = c * T + i
            d, _ = _step_delta(rows["delta"][i], bias, t, limit, cfg)
            u = rows["u"][i].astype(jnp.float32)
            h, y = step(h, d, u, rows["B"][i].astype(jnp.float32),
                        rows["C"][i].astype(jnp.float32))
            ys.append(step_output(y, u, rows["z"][i] if cfg.has_z else None, Dskip, cfg))
        store(c, _plus_out_sum(ys, rows, cfg))
        return h, nxt

    h, _ = jax.lax.fori_loop(0, n_chunks, chunk_body, (h, load(ins, fields, 0, T)))
    return h


def fwd_kernel(*refs, cfg: ScanConfig, save_states: bool):
    """Forward of one (batch, channel block[, time block]).

    Inputs (kernel view): u, delta, z (Lb, bd); A (N, bd) float32 (natural A, transposed);
    B, C (Lb, N); D, bias (1, bd). Outputs: out (Lb, bd); states (Lb/T, N, bd) if
    ``save_states``; last (N, bd). With ``cfg.carry`` one scratch (N, bd) holds h between
    time blocks.
    """
    names = input_names(cfg)
    ins = _split_refs(refs, names)
    rest = refs[len(names):]
    out_ref = rest[0]
    states_ref = rest[1] if save_states else None
    last_ref = rest[1 + save_states]
    scratch = rest[2 + save_states] if cfg.carry else None

    A2 = ins["A"][...].astype(jnp.float32) * LOG2E
    limit = cfg.length - _time_offset(cfg)
    Dskip = ins["D"][0, :].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None

    def step(h, d, u, B_t, C_t):
        h = jnp.exp2(_row(d) * A2) * h + _column(B_t) * _row(d * u)
        return h, jnp.sum(h * _column(C_t), axis=0)

    def store(c, ys):
        for i, y in enumerate(ys):
            out_ref[c * cfg.chunk + i, :] = y.astype(out_ref.dtype)

    h0 = _initial_state(scratch, A2.shape, cfg)  # top level: reads program_id
    h = forward_chunks(ins, h0, cfg, _load_chunk, step, store, states_ref, bias, Dskip, limit)
    if cfg.carry:
        scratch[...] = h
    last_ref[...] = h


def _initial_state(scratch, shape, cfg):
    """Zeros, or (TPU) the state carried from the previous time block."""
    zeros = jnp.zeros(shape, jnp.float32)
    if not cfg.carry:
        return zeros
    first = pl.program_id(2) == 0
    return jnp.where(first, zeros, scratch[...])


def bwd_kernel(*refs, cfg: ScanConfig):
    """Backward of one (batch, channel block[, time block]), time blocks in reverse.

    Inputs: the forward's (u, delta, A, B, C[, D][, z][, bias]), dout (Lb, bd), states
    (Lb/T, N, bd) from the forward, dlast (N, bd) the cotangent of the last state.
    Outputs: du, ddelta (Lb, bd) [dz (Lb, bd)]; dB, dC (Lb, N) float32 partial sums over
    this block's channels; dA (N, bd), dD (1, bd), dbias (1, bd) float32 partial sums over
    this program's steps. With ``cfg.carry``, scratch holds g, dA, dD, dbias between blocks.
    """
    ins, out_refs, (dB_ref, dC_ref, dA_ref, dD_ref, dbias_ref), scratch = backward_refs(refs, cfg)
    out_refs.update(dB=dB_ref, dC=dC_ref)

    A = ins["A"][...].astype(jnp.float32)
    A2 = A * LOG2E
    limit = cfg.length - _time_offset(cfg)
    Dskip = ins["D"][0, :].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][0, :].astype(jnp.float32) if cfg.has_bias else None
    T = cfg.chunk

    n_chunks = cfg.chunks_per_block
    fields = ("u", "delta", "B", "C", "dout") + ("z",) * cfg.has_z

    def load(c):
        rows = _load_chunk(ins, fields, c, T)
        rows["start"] = ins["states"][c]
        return rows

    def chunk_body(k, carry):
        g, dA, dD, dbias, rows = carry
        c = n_chunks - 1 - k
        # Prefetch the previous chunk's rows (chunk 0 reloads itself) before any store.
        nxt = load(jnp.maximum(c - 1, 0))
        # Recompute the T states of this chunk forward; H[i] is the state before step i.
        H = [rows["start"]]
        steps = []
        for i in range(T):
            d, raw = _step_delta(rows["delta"][i], bias, c * T + i, limit, cfg)
            u = rows["u"][i].astype(jnp.float32)
            B_t = rows["B"][i].astype(jnp.float32)
            steps.append((d, raw, u, B_t))
            H.append(jnp.exp2(_row(d) * A2) * H[-1] + _column(B_t) * _row(d * u))
        # Walk the chunk backwards; the rows to store are collected and stored last.
        stores = []
        for i in reversed(range(T)):
            t = c * T + i
            d, raw, u, B_t = steps[i]
            C_t = rows["C"][i].astype(jnp.float32)
            dout = rows["dout"][i].astype(jnp.float32)
            row = {}
            if cfg.has_z:
                dy, row["dz"] = gate_grads(
                    dout, lambda: jnp.sum(H[i + 1] * _column(C_t), axis=0),
                    u, rows["z"][i], Dskip, cfg)
            else:
                dy = dout
            g = g + _column(C_t) * _row(dy)
            row["dC"] = jnp.sum(H[i + 1] * _row(dy), axis=1)
            row["dB"] = jnp.sum(g * _row(d * u), axis=1)
            gB = jnp.sum(g * _column(B_t), axis=0)
            a = jnp.exp2(_row(d) * A2)
            gah = g * a * H[i]
            du, ddelta, dD, dbias = step_input_grads(
                jnp.sum(gah * A, axis=0), gB, d, u, dy, lambda: _sigmoid(raw), t, limit,
                Dskip, dD, dbias, cfg)
            row["du"], row["ddelta"] = du, ddelta
            stores.append((t, row))
            dA = dA + gah * _row(d)
            g = g * a
        for t, row in stores:
            for name, value in row.items():
                store_row(ins, out_refs[name], name, (t, slice(None)), value, cfg)
        return g, dA, dD, dbias, nxt

    zeros_v = jnp.zeros(A.shape[1:], jnp.float32)
    init = (ins["dlast"][...].astype(jnp.float32), jnp.zeros(A.shape, jnp.float32),
            zeros_v, zeros_v)
    if cfg.carry:
        first = pl.program_id(2) == 0
        init = tuple(jnp.where(first, x0, s[...].reshape(x0.shape))
                     for x0, s in zip(init, scratch))
    carry = jax.lax.fori_loop(0, n_chunks, chunk_body, init + (load(n_chunks - 1),))[:4]
    if cfg.carry:
        for s, x in zip(scratch, carry):
            s[...] = x.reshape(s.shape)
    _, dA, dD, dbias = carry
    dA_ref[...] = dA
    dD_ref[...] = dD[None, :]
    dbias_ref[...] = dbias[None, :]


# ---------------------------------------------------------------- v3: every per-step value 2-D
#
# The "tiles" variant (GPU / interpret only). Same maths as above; what changes is the shape
# of every per-step value, so that nothing per step changes rank:
#
#     u_t, delta_t, z_t, dout_t, y_t   (1, bd)   loaded / stored as ``ref[pl.ds(t, 1), :]``
#     B_t, C_t                         (N, 1)    from B, C passed transposed, (N, Lb) views:
#                                                ``ref[:, pl.ds(t, 1)]``
#     D, delta_bias                    (1, bd)
#     sums over N / over channels      ``keepdims=True``: (1, bd) / (N, 1)
#
# A (1, bd) or (N, 1) value broadcasts into the (N, bd) state tile without an expand_dims,
# and a keepdims reduction of the state tile comes back as an expand_dims of its own slice
# layout, which Triton folds. In v2 each step turned (bd,) and (N,) vectors into rows and
# columns (expand_dims of a 1-D blocked layout: a convert_layout through shared memory) and
# back. Outputs are gathered per chunk (a select against an iota per step) and stored once
# per chunk: the (1, bd) rows y, du, ddelta, dz as a (T, bd) tile (a (1, bd) store would
# pick a layout of its own and convert every step), the backward's dB_t, dC_t columns
# (N, 1) as an (N, T) tile into (N, Lb) partials (instead of T strided column stores).


def _load_chunk_tiles(ins, names, c, T):
    """{name: [2-D value at step t for the T steps of chunk c]}: (1, bd) rows, (N, 1) for B, C."""
    def at(name, t):
        ref = ins[name]
        return ref[:, pl.ds(t, 1)] if name in ("B", "C") else ref[pl.ds(t, 1), :]
    return {name: [at(name, c * T + i) for i in range(T)] for name in names}


def tile_row(tile, i):
    """Row i of a (T, bd) tile as a (1, bd) row: a sum over the T axis of the tile masked to
    row i (the compiler moves the values between lanes; no layout is assumed)."""
    step = jax.lax.broadcasted_iota(jnp.int32, tile.shape, 0)
    return jnp.sum(jnp.where(step == i, tile, 0.0), axis=0, keepdims=True)


def _tile_rows(tile):
    """A (T, bd) tile -> its T rows (:func:`tile_row`)."""
    return [tile_row(tile, i) for i in range(tile.shape[0])]


def _gather_rows(rows):
    """T (1, bd) rows -> one (T, bd) tile (a select per row), stored once per chunk."""
    T = len(rows)
    step = jax.lax.broadcasted_iota(jnp.int32, (T, 1), 0)
    tile = jnp.zeros((T,) + rows[0].shape[1:], rows[0].dtype)
    for i, r in enumerate(rows):
        tile = jnp.where(step == i, r, tile)
    return tile


def step_state(h, d, u, B_t, A2, fast):
    """One step of the recurrence on an (N, bd) tile: exp2(delta_t A2) h + B_t (delta_t u_t),
    from (1, bd) rows d, u and an (N, 1) column B_t (float32)."""
    return _fma(_exp2(d * A2, fast), h, B_t * (d * u), fast)


def _block_sync(cfg):
    """A barrier of the program's warps where the kernel is compiled Triton (cfg.fast_math
    marks it): the tiles backward's chunk-start buffer is stored and loaded in layouts the
    compiler picks, so a lane may load what another stored. The interpreter runs in order."""
    if cfg.fast_math:
        pltriton.debug_barrier()


def _store_bc_tile(ref, c, T, tile, cfg):
    """Chunk c's (N, T) tile of dB or dC: stored into this block's partials, or with
    cfg.bc_atomic added into its group's sum (other programs add into the same columns)."""
    if cfg.bc_atomic:
        pltriton.atomic_add(ref, (slice(None), pl.ds(c * T, T)), tile)
    else:
        ref[:, pl.ds(c * T, T)] = tile


def fwd_kernel_tiles(*refs, cfg: ScanConfig, save_states: bool):
    """Forward of one (batch, channel block), every per-step value 2-D (see above).

    Inputs (kernel view): u, delta, z (Lb, bd); A (N, bd) float32; B, C (N, Lb) (transposed);
    D, bias (1, bd). Outputs: out (Lb, bd); states (Lb/K, N, bd) if ``save_states`` (K =
    cfg.state_stride); last (N, bd). GPU layout only (no ``carry``)."""
    assert not cfg.carry, "the tiles variant has no TPU layout"
    names = input_names(cfg)
    ins = _split_refs(refs, names)
    rest = refs[len(names):]
    out_ref = rest[0]
    states_ref = rest[1] if save_states else None
    last_ref = rest[1 + save_states]

    A2 = ins["A"][...].astype(jnp.float32) * LOG2E
    limit = cfg.length
    Dskip = ins["D"][...].astype(jnp.float32) if cfg.has_D else None      # (1, bd)
    bias = ins["bias"][...].astype(jnp.float32) if cfg.has_bias else None

    def step(h, d, u, B_t, C_t):          # d, u (1, bd) rows; B_t, C_t (N, 1) columns
        h = step_state(h, d, u, B_t, A2, cfg.fast_math)
        return h, jnp.sum(h * C_t, axis=0, keepdims=True)                    # (1, bd)

    def store(c, ys):
        T = cfg.chunk
        out_ref[pl.ds(c * T, T), :] = _gather_rows(ys).astype(out_ref.dtype)

    h0 = jnp.zeros(A2.shape, jnp.float32)
    last_ref[...] = forward_chunks(ins, h0, cfg, _load_chunk_tiles, step, store, states_ref,
                                   bias, Dskip, limit)


def bwd_kernel_tiles(*refs, cfg: ScanConfig):
    """Backward of one (batch, channel block), every per-step value 2-D (see above).

    Inputs: as :func:`bwd_kernel` but B, C (N, Lb), and the saved states (Lb/K, N, bd), K =
    cfg.state_stride = m T. Outputs: du, ddelta [dz] (Lb, bd); dB, dC (N, Lb) float32
    partial sums over this block's channels (transposed); dA (N, bd), dD, dbias (1, bd);
    with m > 1 also a buffer (m, N, bd) of chunk starts, a work area: the chunks are walked
    last to first, and before a block of m chunks is walked the program runs the
    recurrence over the block's K steps from the block's saved state, storing the m chunk
    starts there (an extra forward step per step; the saved states are m x fewer).
    """
    assert not cfg.carry, "the tiles variant has no TPU layout"
    ins, row_refs, (dB_ref, dC_ref, dA_ref, dD_ref, dbias_ref), rest = backward_refs(refs, cfg)
    m = cfg.state_every
    starts_ref = rest[0] if m > 1 else None

    A = ins["A"][...].astype(jnp.float32)
    A2 = A * LOG2E
    Dskip = ins["D"][...].astype(jnp.float32) if cfg.has_D else None
    bias = ins["bias"][...].astype(jnp.float32) if cfg.has_bias else None
    T, n_chunks = cfg.chunk, cfg.chunks_per_block
    segment = pl.program_id(2) if cfg.segments > 1 else 0
    limit = cfg.length - segment * (n_chunks * T)
    n = A.shape[0]
    # cfg.delta_tile (one-warp programs, where a tile's rows stay in the warp): delta's bias,
    # softplus and sigmoid computed for the chunk's T steps on one (T, bd) tile and each
    # step's row taken from it (_tile_rows); else on each (1, bd) row, which the (N, bd)
    # state tile's layout repeats on every lane of a channel (8x: a quarter of the loop's
    # instructions, benchmarks/NOTES.md v15).
    delta_tile = cfg.delta_tile and cfg.softplus
    fields = ("u",) + ("delta",) * (not delta_tile) + ("B", "C", "dout") + ("z",) * cfg.has_z
    step_of = jax.lax.broadcasted_iota(jnp.int32, (1, T), 1)                 # (1, T)
    fast = cfg.fast_math

    def load(c, names=fields, start=True):
        """Chunk c's rows and (``start``) the state before it: saved by the forward (m = 1)
        or put in the buffer by the sweep (m > 1); with cfg.accumulate also the chunk's
        (T, bd) tiles of the running sums (the sweep, ``start=False``, takes neither)."""
        rows = _load_chunk_tiles(ins, names, c, T)
        if start:
            rows["start"] = ins["states"][c] if m == 1 else starts_ref[jax.lax.rem(c, m)]
        if delta_tile:
            rows["delta_tile"] = ins["delta"][pl.ds(c * T, T), :]
        if start and cfg.accumulate:         # the running sums the chunk's stores add to
            for name in row_names(cfg):
                rows[f"{name}_sum"] = ins[f"{name}_sum"][pl.ds(c * T, T), :]
        return rows

    def chunk_deltas(rows, c, with_sig=True):
        """[(delta_t, sigmoid(raw_t) or None)] for the chunk's T steps, (1, bd) rows each."""
        with_sig = with_sig and cfg.softplus
        if not delta_tile:
            out = []
            for i in range(T):
                d, raw = _step_delta(rows["delta"][i], bias, c * T + i, limit, cfg)
                out.append((d, _sigmoid(raw) if with_sig else None))
            return out
        steps = c * T + jax.lax.broadcasted_iota(jnp.int32, (T, 1), 0)
        d, raw = _step_delta(rows["delta_tile"], bias, steps, limit, cfg)
        return list(zip(_tile_rows(d), _tile_rows(_sigmoid(raw)) if with_sig else [None] * T))

    def sweep(block):
        """The starts of chunks block m .. block m + m - 1 into starts_ref, from the state the
        forward saved before the block."""
        def advance(q, h):
            c = block * m + q
            starts_ref[q] = h
            rows = load(c, ("u",) + ("delta",) * (not delta_tile) + ("B",), start=False)
            for i, (d, _) in enumerate(chunk_deltas(rows, c, with_sig=False)):
                h = step_state(h, d, rows["u"][i].astype(jnp.float32),
                               rows["B"][i].astype(jnp.float32), A2, fast)
            return h
        jax.lax.fori_loop(0, m, advance, ins["states"][block])

    def refill(c):
        """Before chunk c, the first of its block, the buffer gets the block before (m > 1):
        chunk c's start was read an iteration ago, the next one's is read from there."""
        if m == 1:
            return

        @pl.when((jax.lax.rem(c, m) == 0) & (c > 0))
        def _():
            _block_sync(cfg)             # this block's loads are done
            sweep(c // m - 1)
            _block_sync(cfg)             # the new starts are seen

    def chunk_body(k, carry):
        g, dA, dD, dbias, rows = carry
        c = n_chunks - 1 - k
        refill(c)
        nxt = load(jnp.maximum(c - 1, 0))
        H = [rows["start"]]
        steps = []
        deltas = chunk_deltas(rows, c)
        for i in range(T):
            d, sig = deltas[i]
            u = rows["u"][i].astype(jnp.float32)
            B_t = rows["B"][i].astype(jnp.float32)
            steps.append((d, sig, u, B_t))
            H.append(step_state(H[-1], d, u, B_t, A2, fast))
        dB_tile = jnp.zeros((n, T), jnp.float32)
        dC_tile = jnp.zeros((n, T), jnp.float32)
        stores = []
        for i in reversed(range(T)):
            t = c * T + i
            d, sig, u, B_t = steps[i]
            C_t = rows["C"][i].astype(jnp.float32)
            dout = rows["dout"][i].astype(jnp.float32)
            row = {}
            if cfg.has_z:
                dy, row["dz"] = gate_grads(
                    dout, lambda: jnp.sum(H[i + 1] * C_t, axis=0, keepdims=True),
                    u, rows["z"][i], Dskip, cfg)
            else:
                dy = dout
            g = _fma(C_t, dy, g, fast)
            dC_col = jnp.sum(H[i + 1] * dy, axis=1, keepdims=True)           # (N, 1)
            dB_col = jnp.sum(g * (d * u), axis=1, keepdims=True)
            dC_tile = jnp.where(step_of == i, dC_col, dC_tile)
            dB_tile = jnp.where(step_of == i, dB_col, dB_tile)
            gB = jnp.sum(g * B_t, axis=0, keepdims=True)                     # (1, bd)
            a = _exp2(d * A2, fast)
            gah = g * a * H[i]
            du, ddelta, dD, dbias = step_input_grads(
                jnp.sum(gah * A, axis=0, keepdims=True), gB, d, u, dy, lambda: sig, t, limit,
                Dskip, dD, dbias, cfg)
            row["du"], row["ddelta"] = du, ddelta
            stores.append(row)
            dA = _fma(gah, d, dA, fast)
            g = g * a
        stores.reverse()                                     # step order 0 .. T-1
        for name in stores[0]:
            store_row(ins, row_refs[name], name, (pl.ds(c * T, T), slice(None)),
                      _gather_rows([r[name] for r in stores]), cfg, rows.get(f"{name}_sum"))
        _store_bc_tile(dB_ref, c, T, dB_tile, cfg)
        _store_bc_tile(dC_ref, c, T, dC_tile, cfg)
        return g, dA, dD, dbias, nxt

    zeros_v = jnp.zeros((1,) + A.shape[1:], jnp.float32)
    # the adjoint entering the program's time from the right: the last state's cotangent,
    # or with segments the one entering this segment (link_kernel, from pass 1's parts)
    g = ins["dlast"][...].astype(jnp.float32)
    init = (g, jnp.zeros(A.shape, jnp.float32), zeros_v, zeros_v)
    if m > 1:                                # the last block's chunk starts
        sweep(n_chunks // m - 1)
        _block_sync(cfg)
    first = load(n_chunks - 1)
    _, dA, dD, dbias, _ = jax.lax.fori_loop(0, n_chunks, chunk_body, init + (first,))
    dA_ref[...] = dA
    dD_ref[...] = dD
    dbias_ref[...] = dbias
