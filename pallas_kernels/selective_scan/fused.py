"""Fused selective scan: wrapper (padding, block sizes, ``pallas_call``) and ``custom_vjp``.

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   y_t = C_t . h_t + D u_t,
    out_t = y_t silu(z_t)       (delta = softplus(delta + delta_bias) when asked)

Same semantics as :func:`pallas_kernels.selective_scan.reference.selective_scan_ref`.
Two layouts of one kernel body (:mod:`.kernel`):

  ``"gpu"``  grid (batch, channel blocks); a program walks the whole sequence in a
             ``fori_loop`` over chunks (Triton lowering; also the CPU interpret path).
  ``"tpu"``  grid (batch, channel blocks, time blocks) with the time axis "arbitrary"; the
             state is carried between time blocks in VMEM scratch; 128-channel blocks so
             the lane dimension is full (Mosaic TPU lowering).

Padding: N to a power of two (A = 0, B = C = 0 there), each group's channels to a multiple
of the channel block (so a block never straddles two groups of B, C), L to a multiple of
the time block (delta masked to 0 past the true L inside the kernel).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels.selective_scan.kernel import (ScanConfig, bwd_kernel, bwd_kernel_tiles,
                                                  fwd_kernel, fwd_kernel_tiles, link_kernel)
from pallas_kernels.selective_scan.lanes import (bwd_adjoint_lanes, bwd_kernel_lanes,
                                                 fwd_kernel_lanes)

__all__ = ["selective_scan_pallas", "Layout", "choose_layout"]

PLATFORMS = ("gpu", "tpu")
VARIANTS = ("v2", "tiles", "lanes", "hybrid")
GPU_ONLY_VARIANTS = ("tiles", "lanes", "hybrid")
TILES_BACKWARD = ("tiles", "hybrid")        # the variants whose backward is bwd_kernel_tiles
# (forward kernel, backward kernel) of each variant; "hybrid": the lanes forward, the tiles
# backward (the backward reads the chunk-start states the lanes forward saves every T steps).
KERNELS = {"v2": (fwd_kernel, bwd_kernel), "tiles": (fwd_kernel_tiles, bwd_kernel_tiles),
           "lanes": (fwd_kernel_lanes, bwd_kernel_lanes),
           "hybrid": (fwd_kernel_lanes, bwd_kernel_tiles)}


def _bc_layout(variant, backward=False):
    """How a kernel wants B and C: "LN" (batch, G, L, N) as given, "NL" transposed, and
    whether as float32 (the lanes kernels read them as scalars: no per-use conversion).
    hybrid's tiles backward takes them float32 too: its segmented first pass (a lanes
    kernel) reads C from the same array, and the cast rides in the transpose's fusion."""
    if variant == "hybrid":
        return ("NL", True) if backward else ("LN", True)
    return {"v2": ("LN", False), "tiles": ("NL", False), "lanes": ("LN", True)}[variant]


class Layout(NamedTuple):
    """Static block sizes of one call (hashable: a ``custom_vjp`` static argument).

    platform: "gpu" or "tpu"; interpret: run the kernels in the Pallas interpreter;
    block_d: channels per program; chunk: T, steps per chunk (unrolled; the forward saves
    the state before every chunk for the backward); time_block: steps per grid step on TPU
    (the whole padded L on GPU); n_state: padded N; groups: G; group_width: padded channels
    per group; num_warps: Triton warps per program (bwd_num_warps: of the backward);
    variant (see :mod:`.kernel`, :mod:`.lanes`): "v2" (per-step 1-D rows; the TPU layout's
    kernel), "tiles" (every per-step value 2-D; GPU only), "lanes" (one lane per channel
    holding its N states; GPU only), "hybrid" (the lanes forward and the tiles backward; the
    GPU default, measured fastest: BENCHMARKS.md, benchmarks/NOTES.md v30); unroll: steps per
    loop iteration of the lanes forward; prefetch_bc: the lanes forward loads B, C one
    iteration ahead (else at their step); bwd_segments: time segments the tiles backward runs
    in parallel (see :func:`_backward_call`); segments: time segments the lanes forward runs in
    parallel (see :func:`_forward_segmented`); row_ahead: iterations ahead the lanes forward
    loads u, delta (z); split: lanes a channel in the lanes forward (hybrid; J = N / split
    states a lane, block_d = bwd_block_d / split channels a warp, see
    :class:`.lanes.Lanes`); bwd_block_d: channels a program of hybrid's backward (0: block_d);
    delta_tile: with split S, the lanes forward computes delta on (S, bd) tiles of S steps
    (see :func:`.lanes.fwd_kernel_lanes`); state_every: m, the forward saves the state
    before every m-th chunk only and the tiles backward recomputes the chunk starts between
    (tiles, hybrid; see :func:`.kernel.bwd_kernel_tiles`); bc_atomic: the tiles backward
    adds dB, dC into one (batch, G, N, L) sum by atomic adds instead of writing (batch,
    D / bd, N, L) partials that XLA sums (tiles, hybrid); state_groups: S, the kernels run
    over S copies of the channels, each with its own group of the states, and out, du,
    ddelta, dz are their float32 sums (see :func:`_regroup_states`; the layout's width,
    groups and n_state are the kernels': S D, S G, N / S); serial_groups: the S groups run
    one after another over the D channels (a ``lax.scan``; the layout's width and groups
    are D, G) instead of side by side over S copies (see :func:`_forward_groups`).
    """
    platform: str
    interpret: bool
    block_d: int
    chunk: int
    time_block: int
    n_state: int
    groups: int
    group_width: int
    num_warps: int
    variant: str = "v2"
    unroll: int = 0
    bwd_num_warps: int = 0
    segments: int = 1
    prefetch_bc: bool = True
    bwd_segments: int = 1
    row_ahead: int = 1
    split: int = 1
    bwd_block_d: int = 0
    delta_tile: bool = False
    state_every: int = 1
    bc_atomic: bool = False
    state_groups: int = 1
    serial_groups: bool = False

    @property
    def state_stride(self):
        """K = m T: steps between the states the forward saves."""
        return self.chunk * self.state_every


# The lanes forward's time segments (choose_layout): enough single-warp programs for ~12 an
# SM sub-partition on an H100 (132 SMs x 4), segments long enough, and few enough, that
# linking them (the link kernel walks P - 1 parts a channel block) stays small. Measured at
# batch 8 and 1 (benchmarks/NOTES.md, v6; 32 against 16 and 64 at batch 1 again in run 52).
SEGMENT_PROGRAMS = 6144
MIN_SEGMENT = 128
MAX_SEGMENTS = 32
# hybrid's forward with a channel's states on N / 4 lanes (split), unsegmented, where that
# gives this many single-warp programs (batch 8, D 1536: 1536). Measured on an H200 at bf16
# batch 8 (run 23, benchmarks/NOTES.md v11): L 4096 0.751 ms against the segmented 0.886
# (the official kernel 0.821); at batch 1 (192 programs) split lost to the segmented forward.
SPLIT_PROGRAMS = 1536
SPLIT_STATES = 4            # J, states a lane
# Above N = 16 hybrid keeps at most LANE_STATES states a lane (J = 16: ~125 registers in
# its forward at any N, ptxas sm_90), taking S = N_pad / 16 lanes a channel or more, up to
# N_pad / 4, until there are SPLIT_PROGRAMS programs (benchmarks/NOTES.md v28).
LANE_STATES = 16
# hybrid's tiles backward at N <= 16 where there are BWD_PROGRAMS 32-channel programs (batch
# 8 x D 1536 has 384, batch 1 48): one warp of 16 channels a program (sums over N inside the
# warp, delta on a tile a chunk). On an H200 at bf16 batch 8 (runs 36-39, benchmarks/NOTES.md
# v15): backward 2.67 -> 2.47 ms at L 4096, 1.39 -> 1.31 at 2048, 10.04 -> 9.58 at 16384;
# at batch 1 no better (L 16384) or 3% slower (L 4096), so batch 1 keeps 32 channels and
# two warps. 8 channels a warp ran slower (run 40).
BWD_BLOCK_D = 16
BWD_PROGRAMS = 384
# ... and serial groups (of 16, see SERIAL_GROUP_STATES) from SERIAL_BWD_PROGRAMS: there the
# two-warp programs would save the state every S m0 chunks, the recompute that cost them 40%
# (run 51), while one-warp programs take m 4 S. bf16 L 4096 N 128, serial (run 93, H200):
# batch 4 backward 15.78 -> 13.47 ms, training step 20.05 -> 17.52 (the official kernel
# 16.61), memory 1.06 -> 1.16 GB; batch 2 8.48 -> 7.24 ms, step 10.82 -> 9.54 (official
# 8.47), 0.53 -> 0.58 GB. Batch 1 (48 programs at D 1536) is not timed and keeps two warps.
SERIAL_BWD_PROGRAMS = 96
# The tiles backward adds dB, dC by atomics (bc_atomic) by default from this N_pad (run 60).
BC_ATOMIC_STATES = 256
# Above N = 16 hybrid's backward is segmented by default (its first pass, the lanes adjoint
# kernel, holds a channel's N_pad states in one lane: 255 registers at 64) up to this N_pad,
# where its 32-channel programs are fewer than BWD_PROGRAMS (at D 1536: up to batch 7).
SEGMENTED_BWD_STATES = 64
# Above GROUPS_ABOVE states the scan runs as ceil(N / GROUP_STATES) scans of at most
# GROUP_STATES states each over copies of the channels (:func:`_regroup_states`): each
# state's recurrence is its own, and out, du, ddelta, dz are sums over the states, so each
# group's are partial sums. The tiles backward at N 128 ran 5.2x its N 64 time for 2x the
# states (bf16 batch 8 L 4096, H200: 56.3 against 10.8 ms, runs 61-70). The training step
# at N 128 as 2 / 4 / 8 groups (of 64 / 32 / 16): 27.8 / 24.6 / 28.2 ms, at N 256 as 4 / 8
# / 16: 55.1 / 48.9 / 52.6, batch 1 N 128 4.75 / 4.17 / 3.95; the official kernel 32.4,
# 67.1, 4.56 (runs 79-80; benchmarks/NOTES.md v38-v39). N 64 itself is not grouped: as 2
# groups of 32 its step ran 5% / 9% / 7% faster at batch 1 / 4 / 8 but its forward 7% / 2%
# / 9% slower (runs 82, 85, 86; NOTES.md v40), and its memory is not measured.
GROUPS_ABOVE = 64
GROUP_STATES = 32
# serial_groups: the groups one after another over the D channels (memory: one group's
# kernel outputs instead of S copies of them), by default in groups of SERIAL_GROUP_STATES
# (16: hybrid's one-warp backward, the state saved every 16 steps). At N 128 batch 8 the
# training step 30.4 ms in 1.9 GB against 24.7 ms in 11.3 GB side by side (run 89; at N
# 256 62.5 ms in 2.3 GB against 49.0 in 22.2); the default where memory would be large
# (SERIAL_ABOVE_BYTES below).
SERIAL_GROUP_STATES = 16
# ... and, with the tiles backward, each group saves its state for the backward S x less
# often than N_s states alone would (state_every pow2(S) m0, m0 one group's alone: 4 with
# one-warp backward programs, from batch 2 at D 1536, else 1): the S groups' saved states
# take what one group's alone take, 4 / m0 floats a (t, d) for groups of 16 (T 4) whatever
# N, so the memory of forward + backward is O(batch L D) at every N (see
# benchmarks/NOTES.md v40), with less where that would pad L by more than 1 / SERIAL_PAD
# (:func:`_serial_layout`).
SERIAL_PAD = 16
# By default (serial_groups None, the GPU layout with the tiles backward) the groups run one
# after another where the faster layouts would hold more than SERIAL_ABOVE_BYTES beyond
# them. Those hold SIDE_BYTES_PER_STATE (N - 16) bytes a (b, t, d) more (their saved
# states, N / T floats a (t, d) in one group, and side by side the copies and partial
# sums): measured 1.22 / 1.54 / 1.68 / 1.66 at N 32 / 64 / 128 / 256 (bf16 batch 8 L 4096
# D 1536, forward + backward: 2.53 / 5.36 / 11.32 / 22.23 GB against 1.55 / 1.67 / 1.90 /
# 2.35 serial; batch 1 N 64 / 128 1.44 / 1.70; runs 89-90, benchmarks/NOTES.md v41). So
# memory grows as O(batch L D) whatever N, at most SERIAL_ABOVE_BYTES above serial; the
# price is speed where serial is chosen: batch 8 L 4096 training step N 64 15.9 ms
# against 13.7 (the official kernel 16.3), N 128 30.4 against 24.7 (32.4), N 256 62.5
# against 49.0 (67.3). Where one group's backward programs are few (batch < 8 at D 1536)
# serial is slower: the step at batch 1 (two-warp programs, whose state_every > 1 cost 40%,
# run 51) 0.75x / 0.81x the official kernel's at N 64 / 128 (run 90); at batch 2 / 4 N 128
# 1.18x / 1.39x the faster layouts' time in one-warp programs (run 93, SERIAL_BWD_PROGRAMS;
# 1.32x / 1.57x in two-warp ones, run 92), against 1.23x at batch 8. There the bound is
# SERIAL_ABOVE_BYTES_FEW. A call that is not differentiated
# saves no states and runs the faster layouts where they alone hold at most
# SERIAL_ABOVE_BYTES beyond serial (:func:`_undifferentiated_groups`).
SIDE_BYTES_PER_STATE = 1.6
SERIAL_ABOVE_BYTES = 2 << 30
SERIAL_ABOVE_BYTES_FEW = 8 << 30


def _tile_warps(n_pad, block_d):
    """Warps for an (N_pad, block_d) state tile: 4 from 1024 values, 2 from 128, else 1."""
    return 4 if n_pad * block_d >= 1024 else (2 if n_pad * block_d >= 128 else 1)


def _default_split(n_pad, blocks, width):
    """S, lanes a channel of hybrid's forward, for ``blocks`` = batch x G groups of ``width``
    channels: N_pad <= 16: N_pad / SPLIT_STATES where that gives SPLIT_PROGRAMS unsegmented
    programs, else 1 (segments supply the warps; measured at N 16, benchmarks/NOTES.md v11);
    above, the smallest S >= N_pad / LANE_STATES, at most N_pad / SPLIT_STATES, that gives
    SPLIT_PROGRAMS programs (N_pad / LANE_STATES, segmented, where none does)."""
    base = _lanes_block(width)

    def programs(split):
        return _programs(blocks, width, max(1, base // split))
    if n_pad <= LANE_STATES:
        wide = n_pad // SPLIT_STATES
        return wide if wide > 1 and programs(wide) >= SPLIT_PROGRAMS else 1
    split = n_pad // LANE_STATES
    while split <= n_pad // SPLIT_STATES:
        if programs(split) >= SPLIT_PROGRAMS:
            return split
        split *= 2
    return n_pad // LANE_STATES


def _split_unroll(states, segments):
    """Steps an iteration of hybrid's split forward (S > 1) at J = ``states`` a lane:
    32 / J unsegmented, 16 / J in ``segments`` > 1 time segments, at least 1."""
    return max(1, (32 if segments == 1 else 16) // states)


def _programs(blocks, width, block):
    """Programs for ``blocks`` (batch x G) groups of ``width`` channels, ``block`` a program."""
    return blocks * -(-width // block)


def _lanes_block(width):
    """Channels a lanes program (one a lane): min(32, pow2(width)), a warp's worth."""
    return max(1, min(32, _next_pow2(width)))


def _tiles_block(n_pad, width):
    """Channels a tiles program: min(32, 1024 / N_pad, pow2(width)), a (N_pad, block) float32
    state tile of at most 1024 values."""
    return max(1, min(32, 1024 // n_pad, _next_pow2(width)))


def _tiles_chunk(n_pad, wide_inputs):
    """T of the tiles backward: 4, 2 at N_pad 128 and at N_pad 32 with float32 inputs.

    T = 8 spilled in the tiles backward at every N (ptxas, sm_90, batch 8 L 4096 bf16: 348
    to 1204 bytes a thread; backward 3x slower at N 64, run 49); T = 4 fits but at N_pad 128
    (926 bytes), where T = 2 does and ran 2.5x faster (benchmarks/NOTES.md v23). At N 32,
    T 4 spills 100 bytes and still ran faster than T 2 with bf16 inputs (5.91 against 6.77
    ms, run 49); with float32 inputs it spills 208 and ran slower (7.84 against 6.91 ms,
    run 53), so T = 2 there."""
    return 2 if n_pad == 128 or (n_pad == 32 and wide_inputs) else 4


def _next_pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


def _round_up(n, m):
    return -(-n // m) * m


def _default_segments(programs, length):
    """The smallest power of two P with programs x P >= SEGMENT_PROGRAMS, at most
    MAX_SEGMENTS, with segments of at least MIN_SEGMENT steps (1: no cut)."""
    segments = 1
    while (programs * segments < SEGMENT_PROGRAMS and segments < MAX_SEGMENTS
           and length >= 2 * segments * MIN_SEGMENT):
        segments *= 2
    return segments


def choose_layout(length, dim, n_state, groups, platform, interpret,
                  block_d=None, chunk=None, num_warps=None, time_block=None, variant=None,
                  unroll=None, segments=None, batch=1, prefetch_bc=None, bwd_segments=None,
                  row_ahead=None, split=None, delta_tile=None, bwd_block_d=None,
                  bwd_num_warps=None, state_every=None, bc_atomic=None, wide_inputs=False,
                  serial=False):
    """Block sizes for (batch, L, D, N, G) on ``platform``; explicit arguments override them.
    ``wide_inputs``: float32 sequence inputs (u, delta, B, C), which take more registers.
    ``serial``: the layout of one of several state groups run one after another.

    GPU, variant "hybrid" (the default) or "lanes": 32 channels and one warp a
    program, the forward walking 2 or 4 steps a loop iteration (see below); T = 4 (hybrid) or
    32 / N_pad (lanes). Variant "tiles" or "v2": block_d =
    min(32, 1024 / N_pad, pow2(D/G)) channels (a (N_pad, block_d) float32 state of at most
    1024 values), T = 4 steps a chunk (2 at N_pad 128, and at N_pad 32 with ``wide_inputs``:
    the T recomputed states of the backward in its registers without spills), 2 warps (4
    from 1024 state values). The sweeps behind these are in benchmarks/NOTES.md.
    The lanes forward (lanes, hybrid) is cut into P time segments (see
    :func:`_forward_segmented`): the smallest power of two P giving batch x D / 32 x P >=
    SEGMENT_PROGRAMS programs, at most MAX_SEGMENTS, with segments of at least MIN_SEGMENT
    steps; it walks 32 / N_pad steps an iteration then, 64 / N_pad unsegmented. hybrid's
    tiles backward is cut into bwd_segments time segments by the same rule. ``split`` = S
    (hybrid) puts a channel's N states on S lanes: the forward's programs hold 32 / S
    channels (the backward's stay 32), S x the programs for the same P. By default hybrid
    takes S = N_pad / SPLIT_STATES (4 at N = 16), unsegmented, 32 / J steps an iteration,
    wherever that gives at least SPLIT_PROGRAMS programs (batch 8 x D 1536 does; batch 1
    does not and keeps S = 1 with segments), and with S > 1 computes delta on (S, bd) tiles
    (``delta_tile``) where S x bd = 32. Its tiles backward takes one warp of BWD_BLOCK_D = 16
    channels a program (``bwd_block_d``, ``bwd_num_warps``) where there are at least
    BWD_PROGRAMS 32-channel programs (batch 8 x D 1536 has 384; with ``serial``
    SERIAL_BWD_PROGRAMS, batch 2), else two warps of 32.
    hybrid above N = 16 (benchmarks/NOTES.md v28, v30): at most LANE_STATES = 16 states a
    lane (S from :func:`_default_split`); its backward is the tiles variant's, unsegmented
    where its 32-channel programs reach BWD_PROGRAMS or N_pad > SEGMENTED_BWD_STATES (64:
    the segments' first pass holds N states a lane), else segmented by the rule above
    (at D 1536: N 32 and N 64 below batch 8); where the forward's warp holds
    fewer than 8 channels (N_pad >= 128 at batch 8; N 32 at batch 4-7, N 64 at batch 2-7)
    the forward that saves the states for it takes 8 (unsegmented at N_pad 128 batch 8, in
    the segmented backward's P segments at those N 32-64 points) or is the tiles
    forward (see :func:`_residual_layout`).
    ``state_every`` = m: the forward saves the state before every m-th chunk (every K = m T
    steps), m x fewer saved floats, and the tiles backward recomputes the starts of a
    block's m chunks before walking them (variants tiles and hybrid). Default: N_pad / T
    for hybrid on the GPU at N_pad <= 16 where its backward programs are one warp (K =
    N_pad steps: one saved float a (t, d)), else 1.
    ``bc_atomic`` (tiles, hybrid; see :class:`Layout`): by default on the GPU from N_pad =
    BC_ATOMIC_STATES (256), where the dB, dC partials outgrow the atomics' cost.
    TPU: block_d = 128 (full lanes), T = 16, time blocks of up to 256 steps.
    """
    n_pad = _next_pow2(n_state)
    width = dim // groups
    if platform == "tpu":
        block_d = block_d or 128
        chunk = chunk or 16
        time_block = time_block or min(_round_up(length, chunk), 16 * chunk)
        if time_block % chunk:
            raise ValueError(f"time_block={time_block} must be a multiple of chunk={chunk}")
    if variant is None:
        # GPU: hybrid at every N (N = 16: BENCHMARKS.md, run 7; above, its forward 1.5x-3.3x
        # tiles' with the same backward: run 59, benchmarks/NOTES.md v30).
        variant = "hybrid" if platform == "gpu" else "v2"
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant in GPU_ONLY_VARIANTS and platform != "gpu":
        raise ValueError(f"variant={variant!r} has only the GPU (Triton) layout")
    if state_every is not None and (not isinstance(state_every, int) or state_every < 1):
        raise ValueError(f"state_every must be a positive int, got {state_every!r}")
    for name, value, used in (("state_every", state_every, (state_every or 1) > 1),
                              ("bc_atomic", bc_atomic, bool(bc_atomic))):
        if used and variant not in TILES_BACKWARD:
            raise ValueError(f"{name}={value!r} needs variant 'tiles' or 'hybrid' (an option "
                             f"of the tiles backward), got {variant!r}")
    if (bwd_block_d or bwd_num_warps) and variant != "hybrid":
        raise ValueError(f"bwd_block_d / bwd_num_warps need variant 'hybrid' (the tiles backward "
                         f"after the lanes forward), got {variant!r}")
    for name, value in (("bwd_block_d", bwd_block_d), ("bwd_num_warps", bwd_num_warps)):
        if value is not None and (value < 1 or value & (value - 1)):
            raise ValueError(f"{name} must be a power of two, got {value}")
    bwd_block_d_arg, bwd_warps = bwd_block_d, bwd_num_warps        # bwd_warps: None to choose
    bwd_num_warps = 0
    if split is None and segments is None and block_d is None and variant == "hybrid":
        split = _default_split(n_pad, batch * groups, width)
    split = split or 1
    if split & (split - 1) or split > n_pad:
        raise ValueError(f"split={split} must be a power of two dividing N_pad={n_pad}")
    if delta_tile and split == 1:
        raise ValueError("delta_tile=True needs split > 1 (a channel's states on several lanes)")
    if split > 1 and variant != "hybrid":
        raise ValueError(f"split={split} needs variant 'hybrid' (the lanes forward with the "
                         f"tiles backward), got {variant!r}")
    bwd_block_d = 0
    if variant in ("lanes", "hybrid"):
        # One lane per channel: 32 channels a warp, N states a lane. The forward unrolls
        # `unroll` steps per loop iteration (its registers: 2 x unroll x N prefetched B, C
        # scalars; chosen below, with the segments); the lanes backward holds T x N
        # recomputed states a lane, so T shrinks as N grows. hybrid: the tiles backward (its
        # own warps) on the lanes forward's states.
        # split lanes a channel: the forward's block is the backward's over split
        whole = block_d * split if block_d else _lanes_block(width)
        block_d = max(1, whole // split)
        bwd_block_d = bwd_block_d_arg or whole
        if variant == "hybrid" and bwd_block_d_arg is None and n_pad > LANE_STATES:
            # above N = 16 the tiles backward takes its own block (as variant "tiles")
            bwd_block_d = _tiles_block(n_pad, width)
        if (variant == "hybrid" and bwd_block_d_arg is None and bwd_warps is None
                and n_pad <= 16 and whole > BWD_BLOCK_D
                and _programs(batch * groups, width, whole)
                >= (SERIAL_BWD_PROGRAMS if serial else BWD_PROGRAMS)):
            # one-warp backward programs of 16 channels where there are many programs
            bwd_block_d, bwd_warps = BWD_BLOCK_D, 1
        if delta_tile is None:
            # delta on tiles of S steps wherever a tile has one element a lane (a warp
            # shuffle hands the rows on): bf16 batch 8 forward -10% to -18% (run 27,
            # benchmarks/NOTES.md v13)
            delta_tile = split > 1 and block_d * split == 32
        # hybrid: T = 4, where the tiles backward fits its registers at N = 16 (T = 8 spills
        # 1.2 KB a thread and ran 2.8x slower: benchmarks/NOTES.md, run 7); above, tiles' T.
        lanes_chunk = (max(1, 32 // n_pad) if variant == "lanes"
                       else _tiles_chunk(n_pad, wide_inputs))
        chunk = chunk or lanes_chunk
        if variant == "hybrid":
            bwd_num_warps = bwd_warps or _tile_warps(n_pad, bwd_block_d)
        num_warps = num_warps or max(1, block_d * split // 32)
    elif platform == "gpu":
        block_d = block_d or _tiles_block(n_pad, width)
        chunk = chunk or _tiles_chunk(n_pad, wide_inputs)
    if state_every is None:
        # hybrid with one-warp backward programs (many programs, e.g. batch 8): the state
        # saved every N_pad steps (m = N_pad / T, one float a (t, d) at N = 16: runs 48, 50,
        # the training step +1% to +5%, memory -32%). With two-warp programs (few, e.g.
        # batch 1) the recomputed chunk starts cost the backward +40% (run 51), so there, in
        # tiles and hybrid above N = 16 (its buffer of m chunk starts grows as N^2 / T a
        # channel: m = 64 at N 128) and in the other variants the state is saved every chunk.
        one_warp_bwd = (variant == "hybrid" and bwd_num_warps == 1
                        and n_pad <= LANE_STATES)
        state_every = max(1, n_pad // chunk) if one_warp_bwd and platform == "gpu" else 1
    if bc_atomic is None:
        # from N_pad = BC_ATOMIC_STATES the dB, dC partials (L D N_pad^2 / 1024 floats a batch)
        # cost more than the atomics: at N 256 the backward 139.9 -> 130.4 ms and its memory
        # 39.3 -> 13.6 GB (bf16 batch 8 L 4096, run 60; at N 128 +10%, at 64 +31%)
        bc_atomic = (platform == "gpu" and variant in TILES_BACKWARD
                     and n_pad >= BC_ATOMIC_STATES)
    programs = _programs(batch * groups, width, block_d)
    # the backward's time segments as for 32-channel programs (its one-warp 16-channel
    # layout ran best with the same P: batch 8 L 4096, run 38)
    bwd_programs = _programs(batch * groups, width, max(bwd_block_d, block_d * split))
    if segments is None and variant in ("lanes", "hybrid"):
        # split: its programs unsegmented where there are enough (the rule above)
        segments = (1 if split > 1 and programs >= SPLIT_PROGRAMS
                    else _default_segments(programs, length))
    segments = segments or 1
    if variant in ("lanes", "hybrid") and split > 1:
        # 8 steps an iteration at J = 4 states a lane unsegmented (128 registers; 4 steps ran
        # 0.870 ms against 0.751 at batch 8 L 4096, run 23), 4 segmented
        unroll = unroll or _split_unroll(n_pad // split, segments)
    elif variant in ("lanes", "hybrid"):
        # 4 steps an iteration at N = 16 alone (fewer instructions a step), 2 when segments
        # supply the warps (168 registers instead of 255: 3 warps a sub-partition, not 2)
        unroll = unroll or max(1, (64 if segments == 1 else 32) // n_pad)
    unroll = unroll or chunk
    if segments > 1 and variant not in ("lanes", "hybrid"):
        raise ValueError(f"segments={segments} needs variant 'lanes' or 'hybrid', got {variant!r}")
    if bwd_segments is None and variant == "hybrid" and platform == "gpu":
        # the tiles backward's programs are the lanes forward's (32 channels each): the same
        # rule (batch 8 L 4096: 2.90 -> 2.70 ms at P = 16; batch 1 L 16384: 8.63 -> 1.55 ms
        # at P = 32; benchmarks/NOTES.md, v8-v9 timed). Above N = 16 (the segments' first
        # pass holds a channel's N states in one lane) only up to SEGMENTED_BWD_STATES and
        # where there are fewer than BWD_PROGRAMS programs. bf16 L 4096, backward
        # unsegmented -> segmented (runs 61-64 and, with the first pass's own U, 70; NOTES.md
        # v32, v36): batch 1 N 32 2.63 -> 0.98 ms, N 64 2.87 -> 1.84; batch 4 N 32 3.31 ->
        # 3.01, N 64 7.10 -> 6.68 (step 9.41 -> 8.77); batch 6 N 64 10.76 -> 9.65 (run 73);
        # batch 8 N 32 5.88 -> 5.87 (step 7.26 -> 7.35), N 64 10.90 -> 12.70; batch 16 N 32
        # 9.99 -> 11.44.
        segmented = n_pad <= LANE_STATES or (
            n_pad <= SEGMENTED_BWD_STATES and bwd_programs < BWD_PROGRAMS)
        bwd_segments = _default_segments(bwd_programs, length) if segmented else 1
    bwd_segments = bwd_segments or 1
    if bwd_segments > 1 and variant != "hybrid":
        raise ValueError(f"bwd_segments={bwd_segments} needs variant 'hybrid' (the tiles "
                         f"backward, the lanes layout for its first pass), got {variant!r}")
    if platform == "gpu":
        time_block = _round_up(length, math.lcm(segments, bwd_segments)
                               * max(chunk * state_every, unroll))
    num_warps = num_warps or _tile_warps(n_pad, block_d)
    if max(chunk, unroll) % min(chunk, unroll):
        raise ValueError(f"unroll={unroll} and chunk={chunk} must divide one another")
    stride = chunk * state_every
    if max(stride, unroll) % min(stride, unroll):
        raise ValueError(f"unroll={unroll} and chunk x state_every={stride} must divide one "
                         f"another")
    if variant in TILES_BACKWARD and chunk & (chunk - 1):
        raise ValueError(f"variant={variant!r} needs a power-of-two chunk, got {chunk}")
    return Layout(platform, bool(interpret), block_d, chunk, time_block, n_pad, groups,
                  _round_up(width, max(bwd_block_d, block_d)), num_warps, variant, unroll,
                  bwd_num_warps or num_warps, segments,
                  True if prefetch_bc is None else bool(prefetch_bc), bwd_segments,
                  row_ahead or 1, split, bwd_block_d, bool(delta_tile), state_every,
                  bool(bc_atomic))


def _above_lane_states(lay):
    """hybrid above N = LANE_STATES, unsegmented backward: exactly the tiles variant's."""
    return lay.variant == "hybrid" and lay.n_state > LANE_STATES and lay.bwd_segments == 1


def _bwd_layout(lay):
    """The layout of the backward kernels: hybrid's tiles backward keeps its own block, and
    computes delta on (T, bd) tiles where its programs are one warp (delta_tile: the tile's
    rows move between the warp's lanes; with two warps they cross warps, through shared
    memory and barriers). Above N = 16, unsegmented, it is the tiles variant's backward,
    B and C as given: with them float32 the same kernel ran 0-11% slower (runs 59-60; level
    with tiles' once as given, run 61: benchmarks/NOTES.md v30)."""
    return lay._replace(block_d=lay.bwd_block_d or lay.block_d, split=1,
                        variant="tiles" if _above_lane_states(lay) else lay.variant,
                        delta_tile=lay.variant == "hybrid" and lay.bwd_num_warps == 1)


# A state row a warp stores is block_d float32s. With 4 (16 bytes, half a 32-byte sector)
# hybrid's forward that saves states cost the N 128 training step 105.6 ms against tiles'
# 83.5 (bf16 batch 8 L 4096, run 59; forward alone 7.2 against 24.0); partial-sector
# stores are the likely cause (not profiled). With 8 (N 64) it ran faster than tiles'.
RESIDUAL_MIN_BLOCK = 8
# ... with at most this many states a lane: J 32, one step an iteration, 156 registers and
# no spills at N 128 (ptxas sm_90, NOTES.md v31); the N 128 training step 83.4 -> 69.1 ms
# against the tiles forward (bf16 batch 8 L 4096, run 63; NOTES.md v32).
RESIDUAL_LANE_STATES = 32


def _residual_layout(lay, batch):
    """The layout of the forward that saves states for the backward, for ``batch`` rows:
    ``lay`` itself, except for hybrid above N = 16 where its forward's warp holds fewer
    than RESIDUAL_MIN_BLOCK channels (its state rows part sectors). There: hybrid's forward
    with RESIDUAL_MIN_BLOCK channels a warp (at most RESIDUAL_LANE_STATES states a lane),
    unsegmented at one step an iteration where that still gives SPLIT_PROGRAMS programs,
    else in the segmented backward's P time segments (as batch 1's forward,
    :func:`_split_unroll` steps an iteration); else (an unsegmented backward) the tiles
    forward in the backward's own block. All save the same states, (batch, L_pad / T,
    N_pad, D_pad)."""
    if not (lay.variant == "hybrid" and lay.n_state > LANE_STATES
            and lay.block_d < RESIDUAL_MIN_BLOCK):
        return lay
    split = lay.block_d * lay.split // RESIDUAL_MIN_BLOCK
    programs = _programs(batch * lay.groups, lay.group_width, RESIDUAL_MIN_BLOCK)
    if split >= 1 and lay.n_state // split <= RESIDUAL_LANE_STATES:
        wide = lay._replace(block_d=RESIDUAL_MIN_BLOCK, split=split)
        if programs >= SPLIT_PROGRAMS:
            return wide._replace(unroll=1, segments=1)
        if lay.bwd_segments > 1:
            # bf16 batch 2 N 64 L 4096 (J 4, 2 channels a warp): the forward that saves
            # states 4.2 ms, the training step 7.70 against 5.33 with an unsegmented
            # backward (run 68, benchmarks/NOTES.md v35)
            return wide._replace(segments=lay.bwd_segments,
                                 unroll=_split_unroll(lay.n_state // split, lay.bwd_segments))
    if not _above_lane_states(lay):
        return lay
    bwd = _bwd_layout(lay)
    return bwd._replace(segments=1, unroll=lay.chunk, num_warps=lay.bwd_num_warps,
                        delta_tile=False, bwd_block_d=0)


def _state_dims(lay):
    """The N axis as the lanes forward's kernels see it: (N,), or (S, N / S) (split S)."""
    return (lay.n_state,) if lay.split == 1 else (lay.split, lay.n_state // lay.split)


def _split_n(x, lay, axis):
    """Reshape x's N axis to :func:`_state_dims` (state k = s J + j)."""
    axis = axis % x.ndim
    return x.reshape(x.shape[:axis] + _state_dims(lay) + x.shape[axis + 1:])


def _merge_n(x, lay, axis):
    """Inverse of :func:`_split_n` (``axis``: where the N axis starts)."""
    axis = axis % x.ndim
    k = len(_state_dims(lay))
    return x.reshape(x.shape[:axis] + (lay.n_state,) + x.shape[axis + k:])


# ---------------------------------------------------------------- padding helpers

def _pad_channels(x, lay, axis=-1):
    """(..., D, ...) -> (..., G * group_width, ...): pad each group's channels with zeros."""
    axis = axis % x.ndim
    shape = x.shape
    width = shape[axis] // lay.groups
    x = x.reshape(shape[:axis] + (lay.groups, width) + shape[axis + 1:])
    pads = [(0, 0)] * x.ndim
    pads[axis + 1] = (0, lay.group_width - width)
    x = jnp.pad(x, pads)
    return x.reshape(shape[:axis] + (lay.groups * lay.group_width,) + shape[axis + 1:])


def _unpad_channels(x, lay, dim, axis=-1):
    """Inverse of :func:`_pad_channels` for a true width ``dim``."""
    axis = axis % x.ndim
    shape = x.shape
    x = x.reshape(shape[:axis] + (lay.groups, lay.group_width) + shape[axis + 1:])
    x = jax.lax.slice_in_dim(x, 0, dim // lay.groups, axis=axis + 1)
    return x.reshape(shape[:axis] + (dim,) + shape[axis + 1:])


def _pad_axis(x, axis, size):
    pads = [(0, 0)] * x.ndim
    pads[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pads)


def _padded_length(length, lay):
    return _round_up(length, lay.time_block)


def _prepare_bc(x, lay, length_pad):
    """B or C (batch, L, N) / (batch, L, G, N) -> (batch, G, L_pad, N_pad), dtype kept."""
    x = x[:, :, None, :] if x.ndim == 3 else x
    x = _pad_axis(_pad_axis(x, 1, length_pad), 3, lay.n_state)
    return jnp.swapaxes(x, 1, 2)


def _kernel_bc(x, lay, backward=False):
    """(batch, G, L_pad, N_pad) -> the layout and dtype the kernel reads (see _bc_layout)."""
    order, as_f32 = _bc_layout(lay.variant, backward)
    x = x.astype(jnp.float32) if as_f32 else x
    return jnp.swapaxes(x, 2, 3) if order == "NL" else _split_n(x, lay, 3)


# ---------------------------------------------------------------- pallas_call builders

def _specs(lay, length_pad, backward=False):
    """BlockSpec factories keyed by array kind, for the forward (reverse=False) grid."""
    blocks_per_group = lay.group_width // lay.block_d
    T, n, m, K = lay.chunk, lay.n_state, lay.state_every, lay.state_stride
    if lay.platform == "tpu":
        tb = lay.time_block
        n_time_blocks = length_pad // tb

        def spec(kind, reverse=False):
            def tk(k):
                return n_time_blocks - 1 - k if reverse else k
            return {
                "seq": pl.BlockSpec((None, tb, lay.block_d), lambda b, j, k: (b, tk(k), j)),
                "A": pl.BlockSpec((n, lay.block_d), lambda b, j, k: (0, j)),
                "bc": pl.BlockSpec((None, None, tb, n),
                                   lambda b, j, k: (b, jax.lax.div(j, blocks_per_group), tk(k), 0)),
                "vec": pl.BlockSpec((1, lay.block_d), lambda b, j, k: (0, j)),
                "states": pl.BlockSpec((None, tb // T, n, lay.block_d),
                                       lambda b, j, k: (b, tk(k), 0, j)),
                "state": pl.BlockSpec((None, n, lay.block_d), lambda b, j, k: (b, 0, j)),
                "partial_state": pl.BlockSpec((None, n, lay.block_d), lambda b, j, k: (b, 0, j)),
                "partial_bc": pl.BlockSpec((None, None, tb, n), lambda b, j, k: (b, j, tk(k), 0)),
                "partial_vec": pl.BlockSpec((None, 1, lay.block_d), lambda b, j, k: (b, 0, j)),
            }[kind]
    else:
        transposed = _bc_layout(lay.variant, backward)[0] == "NL"
        sd = _state_dims(lay)            # (N,), or (S, J) in the split lanes forward
        z = (0,) * len(sd)
        bc_block = (None, None, n, length_pad) if transposed else (None, None, length_pad, *sd)
        bc_zeros = (0, 0) if transposed else (0,) + z

        def spec(kind, reverse=False):
            del reverse
            return {
                "seq": pl.BlockSpec((None, length_pad, lay.block_d), lambda b, j: (b, 0, j)),
                "A": pl.BlockSpec((*sd, lay.block_d), lambda b, j: (*z, j)),
                "bc": pl.BlockSpec(bc_block, lambda b, j: (b, jax.lax.div(j, blocks_per_group),
                                                           *bc_zeros)),
                "vec": pl.BlockSpec((1, lay.block_d), lambda b, j: (0, j)),
                "states": pl.BlockSpec((None, length_pad // K, *sd, lay.block_d),
                                       lambda b, j: (b, 0, *z, j)),
                "starts": pl.BlockSpec((None, None, m, n, lay.block_d),
                                       lambda b, j: (b, j, 0, 0, 0)),
                "state": pl.BlockSpec((None, *sd, lay.block_d), lambda b, j: (b, *z, j)),
                "partial_state": pl.BlockSpec((None, *sd, lay.block_d), lambda b, j: (b, *z, j)),
                "partial_bc": pl.BlockSpec(bc_block, lambda b, j: (b, j, 0, 0)),
                "partial_vec": pl.BlockSpec((None, 1, lay.block_d), lambda b, j: (b, 0, j)),
            }[kind]
    return spec


def _segment_specs(lay, length_pad, P, backward=False, shift=0):
    """BlockSpec factories for a grid (batch, channel blocks, P time segments) (GPU layout):
    the same kinds as :func:`_specs`, one segment of time each (``shift``: program p reads
    segment p + shift), per-segment partials (batch, P, ...) ("partial_state" also reads
    the state entering each segment).
    """
    n, bd, m = lay.n_state, lay.block_d, lay.state_every
    K, seg = lay.state_stride, length_pad // P
    blocks_per_group = lay.group_width // bd
    transposed = _bc_layout(lay.variant, backward)[0] == "NL"

    def group(j):
        return jax.lax.div(j, blocks_per_group)

    sd = _state_dims(lay)                # (N,), or (S, J) in the split lanes forward
    z = (0,) * len(sd)
    if transposed:
        bc = pl.BlockSpec((None, None, n, seg), lambda b, j, p: (b, group(j), 0, p + shift))
        partial_bc = pl.BlockSpec((None, None, n, seg), lambda b, j, p: (b, j, 0, p))
    else:
        bc = pl.BlockSpec((None, None, seg, *sd), lambda b, j, p: (b, group(j), p + shift, *z))
        partial_bc = pl.BlockSpec((None, None, seg, n), lambda b, j, p: (b, j, p, 0))
    kinds = {
        "seq": pl.BlockSpec((None, seg, bd), lambda b, j, p: (b, p + shift, j)),
        "A": pl.BlockSpec((*sd, bd), lambda b, j, p: (*z, j)),
        "bc": bc,
        "vec": pl.BlockSpec((1, bd), lambda b, j, p: (0, j)),
        "states": pl.BlockSpec((None, seg // K, *sd, bd), lambda b, j, p: (b, p, *z, j)),
        "starts": pl.BlockSpec((None, None, None, m, n, bd), lambda b, j, p: (b, j, p, 0, 0, 0)),
        "state": pl.BlockSpec((None, *sd, bd), lambda b, j, p: (b, *z, j)),
        "partial_bc": partial_bc,
        "partial_state": pl.BlockSpec((None, None, *sd, bd), lambda b, j, p: (b, p, *z, j)),
        "partial_vec": pl.BlockSpec((None, None, 1, bd), lambda b, j, p: (b, p, 0, j)),
    }
    return lambda kind, reverse=False: kinds[kind]


def _grid(lay, batch, dim_pad, length_pad):
    grid = (batch, dim_pad // lay.block_d)
    if lay.platform == "tpu":
        grid = grid + (length_pad // lay.time_block,)
    return grid


def _compiler_params(lay, backward=False):
    if lay.platform == "tpu":
        from jax.experimental.pallas import tpu as pltpu
        return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary"))
    from jax.experimental.pallas import triton as pltriton
    warps = lay.bwd_num_warps if backward else lay.num_warps
    return pltriton.CompilerParams(num_warps=warps, num_stages=1)


def _scratch(lay, shapes):
    if lay.platform != "tpu":
        return ()
    from jax.experimental.pallas import tpu as pltpu
    return tuple(pltpu.VMEM(s, jnp.float32) for s in shapes)


def _config(lay, length, opts, reverse_time=False):
    has_D, has_z, has_bias, softplus = opts
    return ScanConfig(length=length, chunk=lay.chunk,
                      chunks_per_block=lay.time_block // lay.chunk, has_D=has_D, has_z=has_z,
                      has_bias=has_bias, softplus=softplus, carry=lay.platform == "tpu",
                      reverse_time=reverse_time, unroll=lay.unroll or lay.chunk,
                      fast_math=lay.platform == "gpu" and not lay.interpret,
                      prefetch_bc=lay.prefetch_bc, row_ahead=lay.row_ahead, split=lay.split,
                      masked=length % lay.time_block != 0, delta_tile=lay.delta_tile,
                      state_every=lay.state_every, bc_atomic=lay.bc_atomic)


def _segment_config(cfg, lay, length_pad, P):
    """``cfg`` for a program that walks one of P time segments."""
    return dataclasses.replace(cfg, segments=P, chunks_per_block=length_pad // P // lay.chunk)


LINK_STATES = 4        # states a link program takes of a channel (a (4, 32) tile, one warp)


def _link_call(lay, A_T, parts, sums, first=None):
    """The state entering each time segment (:func:`.kernel.link_kernel`): parts (batch, Q,
    N, D_pad) and sums (batch, Q, 1, D_pad) of a first pass; ``first`` (batch, N, D_pad):
    the backward's dlast (the walk runs last to first), None: the forward (from zero).
    Returns (batch, Q + 1, N, D_pad) float32. Grid (batch, D_pad / 32, N / LINK_STATES) of
    one-warp programs: the walk is serial in Q, so its length is a chain of dependent
    links; a few values a lane keep each link short."""
    batch, Q, n, dim_pad = parts.shape
    bd, ns = math.gcd(32, dim_pad), min(n, LINK_STATES)
    reverse = first is not None
    state = pl.BlockSpec((None, ns, bd), lambda b, j, k: (b, k, j))
    in_specs = [pl.BlockSpec((ns, bd), lambda b, j, k: (k, j))] + [state] * reverse
    in_specs += [pl.BlockSpec((None, Q, ns, bd), lambda b, j, k: (b, 0, k, j)),
                 pl.BlockSpec((None, Q, 1, bd), lambda b, j, k: (b, 0, 0, j))]
    return pl.pallas_call(
        functools.partial(link_kernel, reverse=reverse,
                          fast=lay.platform == "gpu" and not lay.interpret),
        grid=(batch, dim_pad // bd, n // ns), in_specs=in_specs,
        out_specs=pl.BlockSpec((None, Q + 1, ns, bd), lambda b, j, k: (b, 0, k, j)),
        out_shape=jax.ShapeDtypeStruct((batch, Q + 1, n, dim_pad), jnp.float32),
        compiler_params=_compiler_params(lay._replace(num_warps=1)),
        interpret=lay.interpret, name="selective_scan_link")(
            A_T.astype(jnp.float32), *([first] * reverse), parts, sums)


def _forward_segmented(lay, length, opts, save_states, args, total=None):
    """The lanes forward with time cut into P = lay.segments segments run in parallel.

    P x the programs (the lanes forward alone has batch x D / bd single-warp programs),
    for ~2 x the instructions (the exps twice):

      pass 1   segments 0 .. P-2 from a zero state: end state e_q and sum(delta) s_q (states
               only: no C, no y), grid (batch, D / bd, P - 1)
      link     h_0 = 0, h_{q+1} = exp(A s_q) h_q + e_q: the state entering each segment
               (:func:`_link_call`)
      pass 2   the forward of each segment p from h_p, grid (batch, D / bd, P)
               -> out, the saved states, last state

    Returns what :func:`_forward_call` returns (the backward is unchanged); pass 2 adds its
    out to ``total`` as :func:`_forward_call` does.
    """
    u = args[0]
    batch, length_pad, dim_pad = u.shape
    P, bd = lay.segments, lay.block_d
    cfg = _segment_config(_config(lay, length, opts), lay, length_pad, P)
    A_T = args[2]
    args = _forward_args(args, lay)
    spec = _segment_specs(lay, length_pad, P)
    in_specs = _input_specs(spec, opts)
    sd = _state_dims(lay)
    call = functools.partial(pl.pallas_call, compiler_params=_compiler_params(lay),
                             interpret=lay.interpret)
    ends, dsums = call(
        functools.partial(fwd_kernel_lanes, cfg=cfg, save_states=False, end_state_only=True),
        grid=(batch, dim_pad // bd, P - 1), in_specs=in_specs,
        out_specs=[spec("partial_state"), spec("partial_vec")],
        out_shape=[jax.ShapeDtypeStruct((batch, P - 1, *sd, dim_pad), jnp.float32),
                   jax.ShapeDtypeStruct((batch, P - 1, 1, dim_pad), jnp.float32)],
        name="selective_scan_fwd_ends")(*args)
    starts = _split_n(_link_call(lay, A_T, _merge_n(ends, lay, 2), dsums), lay, 2)
    # pass 2: each program reads the state entering its segment
    out_shape, out_specs = _forward_outputs(u, lay, spec, save_states)
    # the last state is the last segment's end: each program writes its own (batch, P, N, D)
    out_shape.append(jax.ShapeDtypeStruct((batch, P, *sd, dim_pad), jnp.float32))
    out_specs.append(spec("partial_state"))
    sums = _sum_args(total)          # the kernel's names: the inputs, [out_sum], start
    res = call(functools.partial(fwd_kernel_lanes, save_states=save_states,
                                 cfg=dataclasses.replace(cfg, accumulate=bool(sums))),
               grid=(batch, dim_pad // bd, P),
               in_specs=in_specs + [spec("seq")] * len(sums) + [spec("partial_state")],
               out_specs=out_specs, out_shape=out_shape,
               input_output_aliases=_sum_alias(len(in_specs), total),
               name="selective_scan_fwd")(*args, *sums, starts)
    last = _merge_n(res[-1][:, P - 1], lay, 1)
    return res[0], (_merge_n(res[1], lay, 2) if save_states else None), last


def _sum_args(total):
    """The forward's running sum of out as a trailing kernel input ([] without one)."""
    return [] if total is None else [total]


def _sum_alias(index, total):
    """input_output_aliases of a forward call whose input ``index`` is ``total``: out
    (output 0) written over it ({} without one)."""
    return {} if total is None else {index: 0}


def _forward_args(args, lay):
    """The padded inputs as the forward kernel reads them: B, C each in its layout and dtype
    (:func:`_kernel_bc`), A's N axis as :func:`_state_dims`. B and C are prepared apart: as
    one concatenated array read at two batch offsets (a launch fewer, 96e4ad9) the bf16
    forward with z ran 0.72 -> 0.85 ms at batch 8 L 4096 (run 45, benchmarks/NOTES.md v20)."""
    args = list(args)
    args[2] = _split_n(args[2], lay, 0)
    args[3], args[4] = _kernel_bc(args[3], lay), _kernel_bc(args[4], lay)
    return args


def _input_specs(spec, opts, reverse=False):
    has_D, has_z, has_bias, _ = opts
    kinds = ["seq", "seq", "A", "bc", "bc"] + ["vec"] * has_D + ["seq"] * has_z
    kinds += ["vec"] * has_bias
    return [spec(k, reverse) for k in kinds]


def _row_dtype(x, lay):
    """The dtype of a kernel's (batch, L, D) output for input x (out for u; du, ddelta, dz):
    x's, or float32 where they are partial sums over groups of states (lay.state_groups)."""
    return x.dtype if lay.state_groups == 1 else jnp.float32


def _forward_outputs(u, lay, spec, save_states):
    """The forward's first outputs: out (u's shape and dtype), then with ``save_states`` the
    states saved every K = lay.state_stride steps, (batch, L_pad / K, *state dims, D_pad)
    float32; as (out_shape, out_specs) lists the caller appends the last state to."""
    batch, length_pad, dim_pad = u.shape
    out_shape = [jax.ShapeDtypeStruct(u.shape, _row_dtype(u, lay))]
    out_specs = [spec("seq")]
    if save_states:
        out_shape.append(jax.ShapeDtypeStruct(
            (batch, length_pad // lay.state_stride, *_state_dims(lay), dim_pad), jnp.float32))
        out_specs.append(spec("states"))
    return out_shape, out_specs


def _forward_call(lay, length, opts, save_states, args, total=None):
    """Run the forward kernel on padded args; returns (out, states or None, last).

    ``total``: None, or a float32 running sum of out (u's padded shape) that the kernel adds
    its out to (the output aliased to it: the serial groups' out without a float32 round
    trip a group, see :func:`_forward_groups`)."""
    if lay.segments > 1:
        return _forward_segmented(lay, length, opts, save_states, args, total)
    u = args[0]
    batch, length_pad, dim_pad = u.shape
    cfg = dataclasses.replace(_config(lay, length, opts), accumulate=total is not None)
    args = _forward_args(args, lay) + _sum_args(total)
    spec = _specs(lay, length_pad)
    n, sd = lay.n_state, _state_dims(lay)
    out_shape, out_specs = _forward_outputs(u, lay, spec, save_states)
    out_shape.append(jax.ShapeDtypeStruct((batch, *sd, dim_pad), jnp.float32))
    out_specs.append(spec("state"))
    kernel = KERNELS[lay.variant][0]
    in_specs = _input_specs(spec, opts) + [spec("seq")] * (total is not None)
    res = pl.pallas_call(
        functools.partial(kernel, cfg=cfg, save_states=save_states),
        grid=_grid(lay, batch, dim_pad, length_pad),
        in_specs=in_specs,
        out_specs=out_specs, out_shape=out_shape,
        scratch_shapes=_scratch(lay, [(n, lay.block_d)]),
        compiler_params=_compiler_params(lay), interpret=lay.interpret,
        input_output_aliases=_sum_alias(len(in_specs) - 1, total), name="selective_scan_fwd",
    )(*args)
    if save_states:
        return res[0], _merge_n(res[1], lay, 2), _merge_n(res[2], lay, 1)
    return res[0], None, _merge_n(res[1], lay, 1)


# The segmented backward's first pass holds a lane's N adjoints, its N A2 and the U x N C
# values of the iteration ahead: at most this many of them, (2 + U) x N_pad. It used to take
# the forward's U: 8 at batch 2 N 64 (split 16), 6470 spill bytes and 7210 SASS an
# iteration (ptxas sm_90), the backward 7.83 ms against 3.70 unsegmented (bf16 L 4096, run
# 67; benchmarks/NOTES.md v35). N 16's U 8 (168 registers, 8 spill bytes) is kept.
ADJOINT_VALUES = 160


def _adjoint_unroll(lay):
    """U of the segmented backward's first pass: the largest divisor of the forward's U with
    (2 + U) x N_pad <= ADJOINT_VALUES (U 8 at N 16, 2 at N 32, 1 from N 64)."""
    most = lay.unroll or lay.chunk
    return next((u for u in range(most, 0, -1)
                 if most % u == 0 and (2 + u) * lay.n_state <= ADJOINT_VALUES), 1)


def _backward_adjoints(lay, length, opts, args, dout):
    """Pass 1 of a segmented backward (P = lay.bwd_segments): for segments 1 .. P-1, the
    adjoint each passes to the one before it from a zero start, gparts (batch, P-1, N, D),
    and its sum of delta, gsums (batch, P-1, 1, D) (:func:`.lanes.bwd_adjoint_lanes`).
    ``args``: as the backward kernel reads them (B, C in the tiles backward's layout).

    One lane a channel: its programs take 32 channels (the widest power-of-two block up to
    32 that tiles a group) whatever block the tiles backward takes."""
    u = args[0]
    batch, length_pad, dim_pad = u.shape
    lay = lay._replace(block_d=math.gcd(32, lay.group_width), unroll=_adjoint_unroll(lay))
    P, n = lay.bwd_segments, lay.n_state
    cfg = _segment_config(_config(lay, length, opts, reverse_time=True), lay, length_pad, P)
    spec = _segment_specs(lay, length_pad, P, backward=True, shift=1)
    return pl.pallas_call(
        functools.partial(bwd_adjoint_lanes, cfg=cfg), grid=(batch, dim_pad // lay.block_d, P - 1),
        in_specs=_input_specs(spec, opts) + [spec("seq")],
        out_specs=[spec("partial_state"), spec("partial_vec")],
        out_shape=[jax.ShapeDtypeStruct((batch, P - 1, n, dim_pad), jnp.float32),
                   jax.ShapeDtypeStruct((batch, P - 1, 1, dim_pad), jnp.float32)],
        compiler_params=_compiler_params(lay), interpret=lay.interpret,
        name="selective_scan_bwd_adjoints")(*args, dout)


def _backward_call(lay, length, opts, args, dout, states, dlast, sums=None):
    """Run the backward kernel; returns per-input cotangents (partials summed here).

    ``sums``: None, or float32 running sums (du, ddelta[, dz]) of u's padded shape that the
    kernel adds its du, ddelta, dz to (outputs aliased to them: the serial groups' sums
    without a float32 round trip a group, see :func:`_backward_groups`).

    With lay.bwd_segments = P > 1 (tiles backward, GPU) time is cut into P segments run in
    parallel, grid (batch, D / bd, P): pass 1 (:func:`_backward_adjoints`) gives each
    segment's adjoint from a zero start, :func:`_link_call` links them with dlast into the
    adjoint entering each segment, and each program of the backward runs from it as
    unsegmented on its segment."""
    u, delta, A_T, B, C = args[:5]
    has_D, has_z, has_bias, _ = opts
    batch, length_pad, dim_pad = u.shape
    n_blocks = dim_pad // lay.block_d
    cfg = dataclasses.replace(_config(lay, length, opts, reverse_time=True),
                              accumulate=sums is not None)
    P = lay.bwd_segments
    args = list(args)
    # B and C prepared apart, as in the forward (see _forward_args)
    args[3], args[4] = _kernel_bc(B, lay, backward=True), _kernel_bc(C, lay, backward=True)
    if P > 1:
        # the adjoint entering each segment from the right, in place of dlast
        dlast = _link_call(lay, A_T, *_backward_adjoints(lay, length, opts, args, dout),
                           first=dlast)
        cfg = _segment_config(cfg, lay, length_pad, P)
        spec = _segment_specs(lay, length_pad, P, backward=True)
        grid = (batch, n_blocks, P)
    else:
        spec = _specs(lay, length_pad, backward=True)
        grid = _grid(lay, batch, dim_pad, length_pad)
    transposed = _bc_layout(lay.variant, backward=True)[0] == "NL"
    n = lay.n_state
    rev = lay.platform == "tpu"
    seq_spec = spec("seq", rev)
    in_specs = _input_specs(spec, opts, rev) + [seq_spec, spec("states", rev),
                                                spec("partial_state" if P > 1 else "state")]
    out_shape = [jax.ShapeDtypeStruct(u.shape, _row_dtype(u, lay)),
                 jax.ShapeDtypeStruct(delta.shape, _row_dtype(delta, lay))]
    out_specs = [seq_spec, seq_spec]
    if has_z:
        z = args[5 + has_D]
        out_shape.append(jax.ShapeDtypeStruct(z.shape, _row_dtype(z, lay)))
        out_specs.append(seq_spec)
    bc_dims = (n, length_pad) if transposed else (length_pad, n)
    aliases, extra = {}, []
    if lay.bc_atomic:
        # one (N, L) sum a (batch, group), every block of the group adding its tiles into it:
        # outputs aliased to zeroed inputs (appended after the kernel's other inputs)
        bc_sum = jax.ShapeDtypeStruct((batch, lay.groups) + bc_dims, jnp.float32)
        n_in = len(in_specs)
        extra = [jnp.zeros(bc_sum.shape, bc_sum.dtype)] * 2
        in_specs += [spec("bc", rev)] * 2
        aliases = {n_in: len(out_shape), n_in + 1: len(out_shape) + 1}
        out_shape += [bc_sum, bc_sum]
        out_specs += [spec("bc", rev)] * 2
    else:
        partial_bc = jax.ShapeDtypeStruct((batch, n_blocks) + bc_dims, jnp.float32)
        out_shape += [partial_bc, partial_bc]
        out_specs += [spec("partial_bc", rev)] * 2
    if sums is not None:             # du, ddelta [dz] (outputs 0, 1 [2]) added to these
        n_in = len(in_specs)
        extra = extra + list(sums)
        in_specs += [seq_spec] * len(sums)
        aliases.update({n_in + i: i for i in range(len(sums))})
    per_segment = (P,) if P > 1 else ()            # partial sums over time per segment
    partial_vec = jax.ShapeDtypeStruct((batch,) + per_segment + (1, dim_pad), jnp.float32)
    partial_state = jax.ShapeDtypeStruct((batch,) + per_segment + (n, dim_pad), jnp.float32)
    out_shape += [partial_state, partial_vec, partial_vec]
    out_specs += [spec("partial_state"), spec("partial_vec"), spec("partial_vec")]
    if lay.state_every > 1:          # the chunk-start buffer (bwd_kernel_tiles), dropped
        out_shape.append(jax.ShapeDtypeStruct(
            (batch, n_blocks) + per_segment + (lay.state_every, n, lay.block_d), jnp.float32))
        out_specs.append(spec("starts"))
    kernel = KERNELS[lay.variant][1]
    res = list(pl.pallas_call(
        functools.partial(kernel, cfg=cfg),
        grid=grid,
        in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
        scratch_shapes=_scratch(lay, [(n, lay.block_d), (n, lay.block_d),
                                      (1, lay.block_d), (1, lay.block_d)]),
        compiler_params=_compiler_params(lay, backward=True), interpret=lay.interpret,
        input_output_aliases=aliases, name="selective_scan_bwd",
    )(*args, dout, states, dlast, *extra))
    du, ddelta = res.pop(0), res.pop(0)
    dz = res.pop(0) if has_z else None
    dB_part, dC_part, dA_part, dD_part, dbias_part = res[:5]
    if not lay.bc_atomic:
        dB, dC = _sum_group_blocks(dB_part, lay), _sum_group_blocks(dC_part, lay)
    else:
        dB, dC = dB_part, dC_part
    if transposed:                           # back to the (batch, G, L, N) layout of B, C
        dB, dC = jnp.swapaxes(dB, 2, 3), jnp.swapaxes(dC, 2, 3)
    dB, dC = dB.astype(B.dtype), dC.astype(C.dtype)
    # One reduction each (summing them as one concatenated array cost 2 more launches of
    # slices and ran slower: run 34, benchmarks/NOTES.md v14)
    dA_part, dD_part, dbias_part = (x.reshape((-1,) + x.shape[-2:])
                                    for x in (dA_part, dD_part, dbias_part))
    dA = jnp.sum(dA_part, axis=0).astype(A_T.dtype)
    dD = jnp.sum(dD_part, axis=0).astype(args[5].dtype) if has_D else None
    dbias = jnp.sum(dbias_part, axis=0).astype(args[-1].dtype) if has_bias else None
    return du, ddelta, dA, dB, dC, dD, dz, dbias


def _sum_group_blocks(part, lay):
    """(batch, n_blocks, L, N) partials -> (batch, G, L, N): sum the blocks of each group
    (tiles variant: (batch, n_blocks, N, L) -> (batch, G, N, L), the prepared B, C layout)."""
    batch, n_blocks, rows, cols = part.shape
    part = part.reshape(batch, lay.groups, n_blocks // lay.groups, rows, cols)
    return jnp.sum(part, axis=2)


# ---------------------------------------------------------------- custom_vjp core

def _opts(Dskip, z, bias, softplus):
    """(has_D, has_z, has_bias, softplus): the static options of a call."""
    return (Dskip is not None, z is not None, bias is not None, softplus)


def _pack(u, delta, A_T, B, C, Dskip, z, bias):
    """The present inputs, in kernel order."""
    return [u, delta, A_T, B, C] + [x for x in (Dskip, z, bias) if x is not None]


def _tile_groups(x, lay):
    """(batch, L, D_pad) -> (batch, L, S D_pad): the channels once for each of the
    lay.state_groups groups of states (identity at S = 1 and with serial groups; None
    stays None)."""
    S = lay.state_groups
    return x if x is None or S == 1 or lay.serial_groups else jnp.tile(x, (1, 1, S))


def _sum_groups(x, lay, like):
    """Inverse of :func:`_tile_groups` for outputs: the S partial sums (float32) added, in
    the dtype of ``like``."""
    S = lay.state_groups
    if x is None or S == 1 or lay.serial_groups:
        return x
    return _split_groups(x, S, 2).sum(axis=0).astype(like.dtype)


def _kernel_inputs(lay, u, delta, A_T, B, C, Dskip, z, bias):
    """The present inputs in kernel order, u, delta, z once for each group of states."""
    return _pack(_tile_groups(u, lay), _tile_groups(delta, lay), A_T, B, C, Dskip,
                 _tile_groups(z, lay), bias)


def _split_groups(x, S, axis):
    """Serial groups: x's ``axis`` of S copies (copy-major) split off onto a leading S axis,
    e.g. A_T (N_s, S D_pad) -> (S, N_s, D_pad) at axis 1 (None stays None)."""
    if x is None:
        return None
    shape = x.shape
    x = x.reshape(shape[:axis] + (S, shape[axis] // S) + shape[axis + 1:])
    return jnp.moveaxis(x, axis, 0)


def _group_inputs(lay, A_T, B, C, Dskip, bias):
    """The per-copy inputs of the S copies stacked on a leading S axis: A_T (S, N_s,
    D_pad); B, C (S, batch, G, L, N_s); Dskip, bias (S, 1, D_pad)."""
    return tuple(_split_groups(x, lay.state_groups, 1) for x in (A_T, B, C, Dskip, bias))


def _merge_groups(x, axis):
    """Inverse of :func:`_split_groups`: the leading S axis folded back into ``axis`` (of
    the array without it), copy-major (None stays None)."""
    if x is None:
        return None
    x = jnp.moveaxis(x, 0, axis)
    return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2:])


def _forward_groups(lay, call_lay, length, opts, save_states, inputs):
    """The forward over the S groups of states: (out in u's dtype, states or None, last
    state (batch, N_s, S D_pad)); ``call_lay``: the layout of the kernel calls.

    Side by side (default): one call over S copies of the channels, its S float32 partial
    outs summed. Serial (lay.serial_groups): a ``lax.scan`` over the groups, each call over
    the D channels with its group's A, B, C (D skip and delta_bias as copies), each kernel
    adding its out into one float32 running sum carried by the scan (the ``total`` of
    :func:`_forward_call`): at most one group's kernel outputs live at a time, where side
    by side holds S copies of u, delta, z and S partial outs. The same kernel work, but
    slower: one copy's programs are S x fewer (the GPU less full) and the float32 out sum is
    read and written once a group (bf16 batch 8 L 4096 N 128, 4 groups of 32: the backward
    29.4 ms against 19.9 side by side; benchmarks/NOTES.md v39). The saved
    states, (S, batch, L_pad / K, N_s, D_pad) serial, are what the backward of the same
    layout reads."""
    u = inputs[0]
    if not lay.serial_groups:
        out, states, last = _forward_call(call_lay, length, opts, save_states,
                                          _kernel_inputs(lay, *inputs))
        return _sum_groups(out, lay, u), states, last
    u, delta, A_T, B, C, Dskip, z, bias = inputs

    def group(total, per_group):
        A_s, B_s, C_s, D_s, bias_s = per_group
        total, states, last = _forward_call(call_lay, length, opts, save_states,
                                            _pack(u, delta, A_s, B_s, C_s, D_s, z, bias_s),
                                            total=total)
        return total, (states, last)
    total, (states, last) = jax.lax.scan(group, jnp.zeros(u.shape, jnp.float32),
                                         _group_inputs(lay, A_T, B, C, Dskip, bias))
    return total.astype(u.dtype), states, _merge_groups(last, 2)


def _backward_groups(lay, length, opts, inputs, dout, states, dlast):
    """The backward over the S groups of states (see :func:`_forward_groups`): du, ddelta,
    dz summed over the groups in float32 and rounded once to their inputs' dtypes; dA, dB,
    dC, dD, dbias for the S copies, as the side-by-side call returns them. Serial: each
    group's kernel adds its du, ddelta, dz into the float32 sums carried by the scan (the
    ``sums`` of :func:`_backward_call`; N 128, 8 groups: 24.9 ms against 25.8 with XLA
    adding the kernel's outputs, N 256 51.5 against 58.8, run 86, NOTES.md v40)."""
    u, delta, z = inputs[0], inputs[1], inputs[6]
    dout = dout.astype(u.dtype)
    if not lay.serial_groups:
        du, ddelta, dA, dB, dC, dD, dz, dbias = _backward_call(
            _bwd_layout(lay), length, opts, _kernel_inputs(lay, *inputs),
            _tile_groups(dout, lay), states, dlast)
        return (_sum_groups(du, lay, u), _sum_groups(ddelta, lay, delta), dA, dB, dC, dD,
                _sum_groups(dz, lay, z), dbias)
    A_T, B, C, Dskip, bias = inputs[2:6] + inputs[7:]

    def group(sums, per_group):
        (A_s, B_s, C_s, D_s, bias_s), states_s, dlast_s = per_group
        du, ddelta, dA, dB, dC, dD, dz, dbias = _backward_call(
            _bwd_layout(lay), length, opts, _pack(u, delta, A_s, B_s, C_s, D_s, z, bias_s),
            dout, states_s, dlast_s, sums=[x for x in sums if x is not None])
        return (du, ddelta, dz), (dA, dB, dC, dD, dbias)
    zeros = tuple(None if x is None else jnp.zeros(x.shape, jnp.float32) for x in (u, delta, z))
    sums, (dA, dB, dC, dD, dbias) = jax.lax.scan(
        group, zeros, (_group_inputs(lay, A_T, B, C, Dskip, bias), states,
                       _split_groups(dlast, lay.state_groups, 2)))
    du, ddelta, dz = (None if x is None else x.astype(like.dtype)
                      for x, like in zip(sums, (u, delta, z)))
    return (du, ddelta, _merge_groups(dA, 1), _merge_groups(dB, 1), _merge_groups(dC, 1),
            _merge_groups(dD, 1), dz, _merge_groups(dbias, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan_core(lay, length, softplus, u, delta, A_T, B, C, Dskip, z, bias):
    """Padded fused scan: out (batch, L_pad, D_pad), last state (batch, N_pad, S D_pad)."""
    inputs = (u, delta, A_T, B, C, Dskip, z, bias)
    out, _, last = _forward_groups(lay, lay, length, _opts(Dskip, z, bias, softplus), False,
                                   inputs)
    return out, last


def _scan_core_fwd(lay, length, softplus, u, delta, A_T, B, C, Dskip, z, bias):
    inputs = (u, delta, A_T, B, C, Dskip, z, bias)
    out, states, last = _forward_groups(lay, _residual_layout(lay, u.shape[0]), length,
                                        _opts(Dskip, z, bias, softplus), True, inputs)
    return (out, last), (inputs, states)


def _scan_core_bwd(lay, length, softplus, residuals, cotangents):
    inputs, states = residuals
    dout, dlast = cotangents
    return _backward_groups(lay, length, _opts(*inputs[5:], softplus), inputs, dout, states,
                            dlast.astype(jnp.float32))


_scan_core.defvjp(_scan_core_fwd, _scan_core_bwd)


# ---------------------------------------------------------------- public entry point

def _check_args(u, delta, A, B, C, D, z, delta_bias):
    """Shape and dtype checks naming the argument (``ssm_jax.ops`` checks more fully)."""
    def floating(x, name):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{name} must be float32 or bfloat16, got dtype {x.dtype}")

    for name, x in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        floating(x, name)
    if u.ndim != 3:
        raise ValueError(f"u must have shape (batch, L, D), got {tuple(u.shape)}")
    batch, length, dim = u.shape
    if A.ndim != 2 or A.shape[0] != dim:
        raise ValueError(f"A must have shape (D={dim}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    expected = {"delta": (batch, length, dim), "z": (batch, length, dim),
                "D": (dim,), "delta_bias": (dim,)}
    for name, x in (("delta", delta), ("z", z), ("D", D), ("delta_bias", delta_bias)):
        if x is not None:
            floating(x, name)
            if tuple(x.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(x.shape)}")
    groups = []
    for name, x in (("B", B), ("C", C)):
        ok = (x.ndim == 3 and x.shape == (batch, length, n)) or (
            x.ndim == 4 and x.shape[:2] == (batch, length) and x.shape[3] == n
            and dim % x.shape[2] == 0)
        if not ok:
            raise ValueError(f"{name} must have shape (batch, L, N) = {(batch, length, n)} or "
                             f"(batch, L, G, N) with G dividing D={dim}, got {tuple(x.shape)}")
        groups.append(1 if x.ndim == 3 else x.shape[2])
    if groups[0] != groups[1]:
        raise ValueError(f"B and C must have the same number of groups, got {groups}")
    return batch, length, dim, n, groups[0]


def _state_groups(n, platform, variant, state_groups, serial_groups, call=None):
    """(S, serial): the groups of states the scan is split into and whether they run one
    after another (see GROUP_STATES, SERIAL_GROUP_STATES). ``call``: (batch, L, D, G) of
    the call; with serial_groups and state_groups None, serial where the faster layouts
    would hold more than SERIAL_ABOVE_BYTES beyond it, SERIAL_ABOVE_BYTES_FEW where one
    group's backward programs are few (:func:`_serial_by_default`)."""
    if serial_groups not in (None, True, False, 0, 1):
        raise ValueError(f"serial_groups must be a bool, got {serial_groups!r}")
    tiles_backward = variant is None or variant in TILES_BACKWARD
    if serial_groups is None:
        serial = (state_groups is None and platform == "gpu" and tiles_backward
                  and call is not None and _serial_by_default(n, *call))
    else:
        serial = bool(serial_groups)
    if state_groups is None:
        if serial:
            state_groups = -(-n // SERIAL_GROUP_STATES)
        elif platform == "gpu" and tiles_backward and n > GROUPS_ABOVE:
            state_groups = -(-n // GROUP_STATES)
        else:
            state_groups = 1
    if not isinstance(state_groups, int) or not 1 <= state_groups <= n:
        raise ValueError(f"state_groups must be an int from 1 to N={n}, got {state_groups!r}")
    return state_groups, serial and state_groups > 1


def _serial_by_default(n, batch, length, dim, groups):
    """Whether the default runs serial groups: where the faster layouts above N = 16 (one
    group to N 64, groups of 32 side by side above) would hold more than SERIAL_ABOVE_BYTES
    in forward + backward beyond them, SIDE_BYTES_PER_STATE (N - 16) bytes a (b, t, d); or
    more than SERIAL_ABOVE_BYTES_FEW where one group of 16's backward runs two-warp
    programs (fewer than BWD_PROGRAMS 32-channel ones, as at batch < 8 x D 1536), which
    make serial slow (see SERIAL_ABOVE_BYTES)."""
    extra = SIDE_BYTES_PER_STATE * max(0, n - LANE_STATES) * batch * length * dim
    width = dim // groups
    full = _programs(batch * groups, width, _lanes_block(width)) >= BWD_PROGRAMS
    return extra > (SERIAL_ABOVE_BYTES if full else SERIAL_ABOVE_BYTES_FEW)


def _undifferentiated_groups(gradient, n, platform, variant, state_groups, serial_groups,
                             call, itemsizes):
    """(S, serial) of a call that is not differentiated, given ``gradient``, the (S, serial)
    of :func:`_state_groups` (what a gradient runs). It saves no states for a backward, so
    where the default chose serial groups for the memory of forward + backward, the forward
    alone runs the faster layouts if they hold at most SERIAL_ABOVE_BYTES beyond it: one
    group (up to N 64: nothing beyond), or S groups side by side (S copies of u, delta, z,
    ``itemsizes`` bytes a (b, t, d), and S float32 partial outs). bf16 batch 8 L 4096 D
    1536 (runs 82, 91, H200): N 64 2.29 ms in one group against 3.20 serial, N 128 4.81 as
    4 groups of 32 (1.6 GB beyond) against 6.11; N 256's 8 copies (3.2 GB) stay serial.
    An explicit state_groups or serial_groups is kept."""
    if not gradient[1] or state_groups is not None or serial_groups is not None:
        return gradient
    faster = _state_groups(n, platform, variant, None, False, call)
    batch, length, dim, _ = call
    copies = faster[0] if faster[0] > 1 else 0
    beyond = copies * (sum(itemsizes) + 4) * batch * length * dim
    return faster if beyond <= SERIAL_ABOVE_BYTES else gradient


def _serial_layout(layout, base, S):
    """Serial groups (tiles backward): ``base`` (one group's layout) with each group saving
    its state S x less often, state_every pow2(S) m (``layout(m)`` builds the layout), so
    that the S groups' saved states take what one group's alone take, O(batch L D) memory
    whatever N (see SERIAL_GROUP_STATES); halved while that pads L by more than
    1 / SERIAL_PAD of base's padded length (L_pad is a multiple of K = m T x the time
    segments: at batch 8 N 256, m 64, of 4096, so L 5000 would run as 8192 steps; it runs
    as 5120 at m 16)."""
    m = base.state_every * _next_pow2(S)
    while m > base.state_every:
        lay = layout(m)
        if lay.time_block * SERIAL_PAD <= base.time_block * (SERIAL_PAD + 1):
            return lay
        m //= 2
    return base


def _regroup_states(S, A, B, C, D, delta_bias):
    """A, B, C, D, delta_bias for the scan as S groups of N_s = ceil(N / S) states over S
    copies of the D channels (identity at S = 1).

    Each state's recurrence h_t[n] = exp(delta_t A[:, n]) h_{t-1}[n] + delta_t B_t[n] u_t is
    its own, and out_t = (sum_n C_t[n] h_t[n] + D u_t) silu(z_t) is a sum over n (du_t,
    ddelta_t, dz_t too): so channel s D + d of the copies holds states s N_s .. s N_s + N_s
    - 1 of channel d, and the sum of the S copies' outputs is out. A -> (S D, N_s); B, C
    -> (batch, L, S G, N_s), group s G + g reading state group s of group g; D on the first
    copy only; delta_bias on each. N is padded to S N_s with zero states (A, B, C zero)."""
    if S == 1:
        return A, B, C, D, delta_bias
    dim, n = A.shape
    ns = -(-n // S)

    def regroup(X, copy_axis):
        """X's last (N) axis padded to S N_s, its S groups folded copy-major into copy_axis."""
        X = _pad_axis(X, X.ndim - 1, S * ns)
        return _merge_groups(_split_groups(X, S, X.ndim - 1), copy_axis)

    def regroup_bc(X):
        return regroup(X if X.ndim == 4 else X[:, :, None, :], 2)

    D = None if D is None else jnp.concatenate([D, jnp.zeros(((S - 1) * dim,), D.dtype)])
    delta_bias = None if delta_bias is None else jnp.tile(delta_bias, S)
    return regroup(A, 0), regroup_bc(B), regroup_bc(C), D, delta_bias


def default_platform():
    """"tpu" on a TPU backend, else "gpu" (the Triton layout, also used when interpreting)."""
    return "tpu" if jax.default_backend() == "tpu" else "gpu"


def selective_scan_pallas(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, *, return_last_state=False, interpret=None,
                          platform=None, block_d=None, chunk=None, num_warps=None,
                          time_block=None, variant=None, unroll=None, segments=None,
                          prefetch_bc=None, bwd_segments=None, row_ahead=None, split=None,
                          delta_tile=None, bwd_block_d=None, bwd_num_warps=None,
                          state_every=None, bc_atomic=None, state_groups=None,
                          serial_groups=None):
    """Fused selective scan (forward and backward kernels), channels-last.

        h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,  out_t = (C_t . h_t + D u_t) silu(z_t)

    Args:
      u, delta: (batch, L, D) float32 or bfloat16.  A: (D, N).
      B, C: (batch, L, N) or grouped (batch, L, G, N), G dividing D.
      D, delta_bias: optional (D,).  z: optional (batch, L, D) gate.
      delta_softplus: delta <- softplus(delta + delta_bias).
      return_last_state: also return h_L, (batch, D, N) float32.
      interpret: run in the Pallas interpreter; None means when the backend is the CPU.
      platform: "gpu" (Triton layout) or "tpu" (Mosaic layout); None picks by backend.
      block_d, chunk, num_warps, time_block, unroll, segments, prefetch_bc, bwd_segments:
        override
        :func:`choose_layout`'s choices (time_block: steps per grid step, TPU layout only;
        unroll: lanes forward; segments: time segments of the lanes forward run in parallel,
        by default chosen from batch x D and L, 1 to disable; prefetch_bc=False: the lanes
        forward loads B, C at their step, not an iteration ahead (fewer registers, but
        slower: NOTES.md v7);
        bwd_segments: time segments of hybrid's tiles backward, chosen like segments, 1 to
        disable; row_ahead: iterations ahead the lanes forward loads u, delta, z (default
        1); split: lanes a channel in hybrid's forward (1, 2, 4, ...: N / split states a
        lane, split x the programs); delta_tile: with split S, compute delta (bias,
        softplus) once a channel-step on (S, bd) tiles of S steps instead of on each of
        the channel's S lanes; bwd_block_d, bwd_num_warps: channels and warps a program
        of hybrid's tiles backward; state_every: m, the forward saves the state before every
        m-th chunk only (m x less memory for the backward's residuals) and the tiles backward
        recomputes the chunk starts between (variants tiles and hybrid; default N_pad / T
        for hybrid on the GPU where its backward programs are one warp, e.g. batch 8, 1
        elsewhere); bc_atomic=True: the tiles backward adds its
        dB, dC into one (batch, G, N, L) float32 sum by atomic adds (memory that does not
        grow with D / block_d; the order of the adds varies, so dB, dC are not bitwise
        reproducible; the backward 1.2x slower at N 16 on an H200, benchmarks/NOTES.md v25,
        but faster at N 256, where it is on by default: v30); see benchmarks/NOTES.md).
      state_groups: S, run the scan as S scans of ceil(N / S) states each over the same
        channels, their outputs and gradients summed (:func:`_regroup_states`); default
        above N = GROUPS_ABOVE (64) ceil(N / GROUP_STATES) (groups of 32) on the GPU layout
        for the variants with the tiles backward, else 1; with serial groups ceil(N /
        SERIAL_GROUP_STATES) (groups of 16).
      serial_groups: True: run the S groups one after another over the D channels (a
        ``lax.scan``) instead of side by side over S copies of them: less memory (no S
        copies of u, delta, z and of their float32 partial sums; with the tiles backward
        each group saves its state S x less often, so the saved states do not grow with
        N), more time (bf16 batch 8 L 4096 N 128 on an H200: the training step 30.4 ms in
        1.9 GB against 24.7 ms in 11.3 GB; benchmarks/NOTES.md v41). False: the faster
        layouts (one group up to N 64, groups of 32 side by side above). None (default):
        with state_groups None, on the GPU layout with the tiles backward, serial where the
        faster layouts would hold more than SERIAL_ABOVE_BYTES (2 GiB) beyond it (above N
        16 at batch x L x D > 2^31 / (1.6 (N - 16)): e.g. from N 64 at batch 8, L 4096,
        D 1536), 8 GiB where one group's backward programs are few (batch < 8 at D 1536),
        else False: forward + backward memory O(batch L D) whatever N. A call that is not
        differentiated saves no states: there the default runs the faster layouts where
        they hold at most 2 GiB beyond serial (:func:`_undifferentiated_groups`; e.g. N 64
        and 128 at batch 8 L 4096 D 1536 bf16), and a gradient the serial groups.
      variant: None (the layout's default: "hybrid" on the GPU layout, "v2" on TPU), "v2",
        "tiles", "lanes" or "hybrid" (see :class:`Layout`); the measured times of each are
        in BENCHMARKS.md and benchmarks/NOTES.md.
    Returns:
      out (batch, L, D) in u's dtype [, last state (batch, D, N) float32].
    """
    batch, length, dim, n, groups = _check_args(u, delta, A, B, C, D, z, delta_bias)
    platform = platform or default_platform()
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    call = (batch, length, dim, groups)
    S, serial = _state_groups(n, platform, variant, state_groups, serial_groups, call)
    run = functools.partial(
        _scan_in_groups, platform=platform, interpret=interpret,
        softplus=bool(delta_softplus), return_last_state=return_last_state,
        options=dict(block_d=block_d, chunk=chunk, num_warps=num_warps,
                     time_block=time_block, variant=variant, unroll=unroll,
                     segments=segments, prefetch_bc=prefetch_bc, bwd_segments=bwd_segments,
                     row_ahead=row_ahead, split=split, delta_tile=delta_tile,
                     bwd_block_d=bwd_block_d, bwd_num_warps=bwd_num_warps,
                     bc_atomic=bc_atomic),
        state_every=state_every)
    args = (u, delta, A, B, C, D, z, delta_bias)
    undifferentiated = _undifferentiated_groups(
        (S, serial), n, platform, variant, state_groups, serial_groups, call,
        [x.dtype.itemsize for x in (u, delta, z) if x is not None])
    if undifferentiated == (S, serial):
        return run(S, serial, *args)
    return _forward_apart(functools.partial(run, *undifferentiated),
                          functools.partial(run, S, serial), *args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _forward_apart(primal, train, *args):
    """``primal(*args)`` where the call is not differentiated; a gradient (its forward and
    backward) differentiates ``train(*args)`` instead, the same function in another layout
    (:func:`_undifferentiated_groups`)."""
    return primal(*args)


def _forward_apart_fwd(primal, train, *args):
    return jax.vjp(train, *args)


def _forward_apart_bwd(primal, train, vjp, cotangent):
    return vjp(cotangent)


_forward_apart.defvjp(_forward_apart_fwd, _forward_apart_bwd)


def _scan_in_groups(S, serial, u, delta, A, B, C, D, z, delta_bias, *, platform, interpret,
                    softplus, return_last_state, options, state_every):
    """:func:`selective_scan_pallas` as S groups of states (``serial``: one after another),
    the layout's other choices from ``options`` (its keyword arguments)."""
    batch, length, dim = u.shape
    n, groups = A.shape[1], 1 if B.ndim == 3 else B.shape[2]
    A, B, C, D, delta_bias = _regroup_states(S, A, B, C, D, delta_bias)
    n_s = A.shape[1]
    copies = 1 if serial else S          # copies of the channels one kernel call walks

    def layout(state_every):
        return choose_layout(
            length, copies * dim, n_s, copies * groups, platform, interpret, batch=batch,
            state_every=state_every, serial=serial,
            wide_inputs=any(x.dtype.itemsize >= 4 for x in (u, delta, B, C)), **options)
    lay = layout(state_every)
    if serial and state_every is None and lay.variant in TILES_BACKWARD:
        lay = _serial_layout(layout, lay, S)
    lay = lay._replace(state_groups=S, serial_groups=serial)
    copy = lay._replace(groups=groups)               # the layout of one copy of D channels
    wide = lay._replace(groups=S * groups)           # of the S copies (A, D, delta_bias)
    length_pad = _padded_length(length, lay)

    def seq(x):
        return None if x is None else _pad_channels(_pad_axis(x, 1, length_pad), copy)

    def vec(x):
        return None if x is None else _pad_channels(x.astype(jnp.float32)[None, :], wide)

    A_T = _pad_axis(_pad_channels(A.astype(jnp.float32).T, wide), 0, lay.n_state)
    out, last = _scan_core(
        lay, length, softplus, seq(u), seq(delta), A_T,
        _prepare_bc(B, lay, length_pad), _prepare_bc(C, lay, length_pad), vec(D), seq(z),
        vec(delta_bias))
    out = _unpad_channels(out[:, :length], copy, dim)
    if not return_last_state:
        return out
    last = _unpad_channels(last[:, :n_s], wide, S * dim, axis=2)      # (batch, N_s, S D)
    # the inverse of _regroup_states: copy s's N_s states back to states s N_s .. of N
    last = _merge_groups(_split_groups(jnp.swapaxes(last, 1, 2), S, 1), 2)
    return out, last[:, :, :n]
