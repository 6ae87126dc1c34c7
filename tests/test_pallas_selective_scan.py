"""The fused Pallas selective scan against the sequential reference: values and gradients.

On the CPU the kernels run in the Pallas interpreter (small shapes, short chunks to keep the
compile short); the tests marked ``gpu`` run them compiled on a GPU with the default layout.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.selective_scan import choose_layout, selective_scan_pallas, selective_scan_ref
from pallas_kernels.selective_scan.testing import ARG_NAMES, random_inputs, rel_err

on_gpu = jax.default_backend() == "gpu"


def _loss_and_outputs(fn, seed, kwargs):
    """sum(out * W) + sum(last_state * V) for random W, V; returns (loss, outputs). W and V
    are drawn by numpy, so the un-jitted reference compiles no random-number program."""
    def loss(*args):
        res = fn(*args, **kwargs)
        out, last = res if kwargs.get("return_last_state") else (res, None)
        rng = np.random.default_rng(seed)
        w = rng.standard_normal(out.shape, np.float32)
        total = jnp.sum(out.astype(jnp.float32) * w)
        if last is not None:
            total = total + jnp.sum(last * rng.standard_normal(last.shape, np.float32))
        return total, res
    return loss


def check_against_reference(args, kwargs, pallas_kwargs, tol, grad_tol):
    """Compare outputs (and last state) and the gradients for every present input (ours
    jitted as a training step is: one XLA compile, ~10% less CPU in interpret mode than
    op by op)."""
    argnums = tuple(i for i, a in enumerate(args) if a is not None)
    ours = jax.jit(jax.value_and_grad(
        _loss_and_outputs(lambda *a, **k: selective_scan_pallas(*a, **k, **pallas_kwargs),
                          7, kwargs), argnums=argnums, has_aux=True))
    ref = jax.value_and_grad(_loss_and_outputs(selective_scan_ref, 7, kwargs),
                             argnums=argnums, has_aux=True)
    (_, res), grads = ours(*args)
    (_, res_ref), grads_ref = ref(*args)
    res, res_ref = (res, res_ref) if kwargs.get("return_last_state") else ((res,), (res_ref,))
    for x, r in zip(res, res_ref):
        assert x.shape == r.shape and x.dtype == r.dtype
        assert np.all(np.isfinite(np.asarray(x, np.float32)))
        assert rel_err(x, r) < tol, ("value", rel_err(x, r))
    for i, g, gr in zip(argnums, grads, grads_ref):
        assert g.shape == gr.shape and g.dtype == gr.dtype, ARG_NAMES[i]
        assert rel_err(g, gr) < grad_tol, (ARG_NAMES[i], rel_err(g, gr))


INTERPRET_CASES = [
    # (batch, L, D, N, groups, dtype, optional inputs, softplus, last state, layout overrides)
    pytest.param(1, 1, 4, 2, None, jnp.float32, (False, False, False), False, False,
                 dict(chunk=2), id="L1-plain"),
    pytest.param(2, 13, 12, 5, None, jnp.float32, (True, True, True), True, True,
                 dict(chunk=2, block_d=8), id="Lprime-Dtail-Npad-all"),
    pytest.param(2, 7, 18, 4, 3, jnp.float32, (True, False, True), True, True,
                 dict(chunk=2, block_d=4), id="grouped-Dg-tail"),
    pytest.param(2, 11, 8, 4, 2, jnp.bfloat16, (True, True, True), True, True,
                 dict(chunk=4), id="bf16-grouped-all"),
    pytest.param(1, 9, 6, 3, None, jnp.float32, (False, True, False), False, True,
                 dict(chunk=2, platform="tpu", time_block=4), id="tpu-layout-carry"),
]


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,opts,softplus,last,layout",
                         INTERPRET_CASES)
def test_matches_reference_interpret(batch, length, dim, n, groups, dtype, opts, softplus,
                                     last, layout):
    _check_interpret(batch, length, dim, n, groups, dtype, opts, softplus, last, layout)


# The cases above run the GPU layout's default variant ("hybrid");
# "v2" (per-step 1-D rows, also the TPU layout's kernel) and "lanes" on the same cases.
V2_CASES = [c for c in INTERPRET_CASES if c.id in ("L1-plain", "Lprime-Dtail-Npad-all",
                                                     "grouped-Dg-tail", "bf16-grouped-all")]


@pytest.mark.parametrize("variant", ["v2", "lanes"])
@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,opts,softplus,last,layout",
                         V2_CASES)
def test_variant_matches_reference_interpret(batch, length, dim, n, groups, dtype, opts,
                                             softplus, last, layout, variant):
    _check_interpret(batch, length, dim, n, groups, dtype, opts, softplus, last,
                     dict(layout, variant=variant))


@pytest.mark.parametrize("variant,layout", [
    ("lanes", dict(chunk=4, unroll=2)),      # a state saved every other loop iteration
    ("lanes", dict(chunk=2, unroll=4)),      # two states saved per loop iteration
    ("hybrid", dict(chunk=4, unroll=2)),     # lanes forward, tiles backward
    ("hybrid", dict()),
])
def test_lanes_forward_unroll_and_hybrid_interpret(variant, layout):
    """The lanes forward's loop step (unroll) and its state-save interval (chunk) differ; the
    backward (lanes, or tiles for hybrid) reads the states it saved: values and gradients."""
    _check_interpret(2, 21, 40, 6, 2, jnp.float32, (True, True, True), True, True,
                     dict(layout, variant=variant))


@pytest.mark.parametrize("batch,length,dim,n,dtype,layout", [
    pytest.param(2, 21, 32, 64, jnp.float32, dict(), id="N64-J16"),
    pytest.param(1, 37, 16, 128, jnp.float32, dict(), id="N128-J16-Lprime"),
    pytest.param(2, 50, 32, 32, jnp.bfloat16, dict(), id="N32-bf16"),
    pytest.param(1, 40, 32, 64, jnp.float32, dict(split=4, segments=2), id="N64-2seg"),
    pytest.param(2, 21, 8, 64, jnp.float32, dict(split=16), id="N64-J4-D8"),
    pytest.param(1, 40, 32, 32, jnp.float32, dict(bwd_segments=3), id="N32-bwd3seg"),
    # the forward walks 8 steps an iteration, the segmented backward's first pass 1
    pytest.param(2, 29, 8, 64, jnp.bfloat16,
                 dict(split=16, segments=1, unroll=8, bwd_segments=2), id="N64-bwd2seg-U8"),
    # one-warp backward programs of 2 channels above N = 16 (NOTES.md v33, opt-in)
    pytest.param(2, 19, 8, 256, jnp.bfloat16,
                 dict(bwd_block_d=2, bwd_num_warps=1, state_every=1), id="N256-bwd-w1-bd2"),
])
def test_hybrid_above_16_states_interpret(batch, length, dim, n, dtype, layout):
    """hybrid above N = 16 (the split lanes forward, J <= 16 states a lane; the tiles
    backward in its own block and chunk): values, last state and gradients. Where the
    forward's warp holds fewer than 8 channels (N128-J16-Lprime: 2, N64-J4-D8: 1) the
    gradient's forward is the tiles forward (_residual_layout); N64-J16 (8) keeps hybrid's."""
    _check_interpret(batch, length, dim, n, None, dtype, (True, True, True), True, True,
                     dict(layout, variant="hybrid"))


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,residual", [
    pytest.param(2, 13, 20, 24, 2, jnp.float32, "hybrid", id="N24-grouped-Dgtail-Lprime"),
    pytest.param(1, 17, 12, 40, None, jnp.bfloat16, "tiles", id="N40-bf16-Dtail"),
    pytest.param(2, 11, 24, 100, 3, jnp.float32, "tiles", id="N100-grouped"),
    pytest.param(1, 9, 16, 200, 2, jnp.float32, "tiles", id="N200-grouped-bc-atomic"),
    pytest.param(1, 300, 12, 40, None, jnp.float32, "hybrid", id="N40-bwd-segmented"),
])
def test_default_above_16_states_awkward_shapes_interpret(batch, length, dim, n, groups,
                                                          dtype, residual):
    """The GPU default above N = 16 (hybrid; the gradient's forward the tiles forward where
    a warp holds < 8 channels; dB, dC by atomics from N_pad 256) on awkward shapes: N
    padded to a power of two, grouped B, C, a group width that is no power of two, L
    prime: values, last state and gradients. ``residual``: the gradient's forward (tiles
    where the forward's warp holds < 8 channels: 4 at N40, 1 at N100, N200)."""
    from pallas_kernels.selective_scan.fused import _residual_layout
    lay = choose_layout(length, dim, n, groups or 1, "gpu", True, batch=batch)
    assert lay.variant == "hybrid" and lay.bc_atomic == (n > 128)
    assert _residual_layout(lay, batch).variant == residual
    assert lay.bwd_segments == (2 if length >= 256 else 1)   # segments of >= 128 steps
    _check_interpret(batch, length, dim, n, groups, dtype, (True, True, True), True, True,
                     dict())


def test_default_gradient_forward_with_8_channels_a_warp_interpret(monkeypatch):
    """Where hybrid's forward warp holds < 8 channels but 8 a warp (J <= 32) still gives
    SPLIT_PROGRAMS programs (N 128 at batch 8, D 1536 on the GPU; here SPLIT_PROGRAMS
    lowered to reach it at a small shape) the gradient's forward is hybrid's at S 4:
    values, last state and gradients through that path."""
    from pallas_kernels.selective_scan import fused
    monkeypatch.setattr(fused, "SPLIT_PROGRAMS", 8)
    lay = choose_layout(19, 32, 128, 1, "gpu", True, batch=2)
    residual = fused._residual_layout(lay, 2)
    assert (lay.split, lay.block_d) == (8, 4)
    assert (residual.variant, residual.split, residual.block_d, residual.unroll) == (
        "hybrid", 4, 8, 1)
    _check_interpret(2, 19, 32, 128, None, jnp.float32, (True, True, True), True, True,
                     dict())


def test_default_gradient_forward_segmented_with_the_backward_interpret(monkeypatch):
    """Where hybrid's forward warp holds < 8 channels, 8 a warp give fewer than
    SPLIT_PROGRAMS programs and the backward is segmented (N 64 at batch 2-7 and N 32 at
    batch 4-7, D 1536, on the GPU; here SPLIT_PROGRAMS lowered to 32) the gradient's forward is
    hybrid's with 8 channels a warp in the backward's time segments: values, last state and
    gradients through that path."""
    from pallas_kernels.selective_scan import fused
    monkeypatch.setattr(fused, "SPLIT_PROGRAMS", 32)
    lay = choose_layout(300, 32, 64, 1, "gpu", True, batch=2)
    residual = fused._residual_layout(lay, 2)
    assert (lay.split, lay.block_d, lay.segments, lay.bwd_segments) == (16, 2, 1, 2)
    assert (residual.variant, residual.split, residual.block_d, residual.segments,
            residual.unroll) == ("hybrid", 4, 8, 2, 1)
    _check_interpret(2, 300, 32, 64, None, jnp.bfloat16, (True, True, True), True, True,
                     dict())


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,softplus,layout", [
    pytest.param(2, 21, 40, 6, 2, jnp.float32, True, dict(segments=3, chunk=2, unroll=2),
                 id="hybrid-3seg-grouped"),
    pytest.param(2, 21, 40, 6, 2, jnp.float32, True,
                 dict(segments=3, chunk=2, unroll=2, prefetch_bc=False),
                 id="hybrid-3seg-bc-at-step"),
    pytest.param(1, 37, 16, 4, None, jnp.float32, False, dict(segments=4, variant="lanes"),
                 id="lanes-4seg-Lprime"),
    pytest.param(2, 50, 32, 16, None, jnp.bfloat16, True, dict(segments=2), id="bf16-2seg"),
    pytest.param(2, 21, 40, 6, 2, jnp.float32, True, dict(segments=3, chunk=2, unroll=2,
                                                          row_ahead=3), id="3seg-rows3ahead"),
])
def test_segmented_forward_interpret(batch, length, dim, n, groups, dtype, softplus, layout):
    """Time cut into segments run in parallel (pass 1: end states from zero; the link kernel;
    pass 2 from the true states): the same outputs, last state and gradients as the
    reference."""
    _check_interpret(batch, length, dim, n, groups, dtype, (True, True, True), softplus, True,
                     layout)


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,layout", [
    pytest.param(2, 21, 40, 6, 2, jnp.float32, dict(split=2, chunk=2, unroll=2),
                 id="split2-grouped-Npad"),
    pytest.param(2, 21, 40, 16, None, jnp.float32, dict(split=4, chunk=4, unroll=2, segments=3),
                 id="split4-3seg"),
    pytest.param(1, 37, 16, 8, None, jnp.float32,
                 dict(split=8, chunk=4, unroll=4, segments=2, row_ahead=2),
                 id="split8-2seg-Lprime-rows2ahead"),
    pytest.param(2, 50, 32, 16, None, jnp.bfloat16, dict(split=4, segments=2), id="bf16-split4"),
    pytest.param(2, 21, 40, 6, 2, jnp.float32, dict(split=2, chunk=2, unroll=4, delta_tile=True),
                 id="split2-deltatile-grouped-Lprime"),
    pytest.param(2, 23, 16, 16, None, jnp.float32,
                 dict(split=4, chunk=4, unroll=8, segments=3, delta_tile=True),
                 id="split4-3seg-deltatile"),
    pytest.param(2, 64, 32, 16, None, jnp.bfloat16, dict(split=4, delta_tile=True),
                 id="bf16-split4-deltatile-unpadded"),
])
def test_split_lanes_forward_interpret(batch, length, dim, n, groups, dtype, layout):
    """A channel's N states on S lanes (hybrid's forward; the tiles backward reads the states
    it saved): outputs, last state and gradients against the reference."""
    _check_interpret(batch, length, dim, n, groups, dtype, (True, True, True), True, True,
                     dict(layout, variant="hybrid"))


def test_split_layout_blocks_and_checks():
    """split S: the forward's program holds 32 / S channels; S programs for one, so the
    default segments fall by S; S must be a power of two dividing N_pad and needs hybrid.
    With 384 32-channel programs (batch 8, D 1536) the backward takes one warp of 16
    channels, its segments counted as for 32-channel programs; at batch 1, two warps of 32."""
    lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=8, split=4)
    assert (lay.block_d, lay.bwd_block_d, lay.split, lay.group_width) == (8, 16, 4, 1536)
    assert (lay.segments, lay.unroll, lay.bwd_segments, lay.bwd_num_warps) == (1, 8, 16, 1)
    lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=1)
    assert (lay.bwd_block_d, lay.bwd_num_warps, lay.bwd_segments) == (32, 2, 32)
    # too few programs unsegmented (batch 1): the forward's segment rule on 8-channel blocks
    lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=1, split=4)
    assert (lay.segments, lay.unroll) == (32, 4)
    assert choose_layout(100, 20, 16, 1, "gpu", False, split=2).group_width == 32
    with pytest.raises(ValueError, match="split"):
        choose_layout(64, 32, 16, 1, "gpu", False, split=3)
    with pytest.raises(ValueError, match="split"):
        choose_layout(64, 32, 4, 1, "gpu", False, split=8)
    with pytest.raises(ValueError, match="split"):
        choose_layout(64, 32, 16, 1, "gpu", False, split=2, variant="lanes")


def test_default_segmented_layout_interpret():
    """At L 300, batch 1, D 32 the default layout cuts the forward in 2 segments walking 8
    steps an iteration: values, last state and gradients against the reference."""
    lay = choose_layout(300, 32, 4, 1, "gpu", True, batch=1)
    assert (lay.variant, lay.segments, lay.unroll, lay.chunk) == ("hybrid", 2, 8, 4)
    _check_interpret(1, 300, 32, 4, None, jnp.float32, (True, True, True), True, True, {})


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,softplus,layout", [
    pytest.param(2, 37, 40, 6, 2, jnp.float32, True, dict(bwd_segments=3, chunk=2, unroll=2),
                 id="3seg-grouped-Lprime"),
    pytest.param(1, 64, 32, 16, None, jnp.float32, False,
                 dict(bwd_segments=4, segments=2, chunk=4, unroll=4), id="4seg-fwd2seg"),
    pytest.param(2, 50, 32, 8, None, jnp.bfloat16, True, dict(bwd_segments=2), id="bf16-2seg"),
    # one-warp backward programs of 16 channels: delta on (T, bd) tiles a chunk, the adjoint
    # pass still 32 channels a program
    pytest.param(2, 37, 64, 6, 2, jnp.float32, True,
                 dict(bwd_segments=3, bwd_block_d=16, bwd_num_warps=1), id="w1-deltatile-3seg"),
    pytest.param(1, 29, 48, 16, None, jnp.bfloat16, True,
                 dict(bwd_block_d=8, bwd_num_warps=1, bwd_segments=1),
                 id="w1-deltatile-bd8-Dtail"),
])
def test_segmented_backward_interpret(batch, length, dim, n, groups, dtype, softplus, layout):
    """The tiles backward cut into time segments (pass 1: each segment's adjoint from zero;
    the link kernel: the adjoint entering each segment): the same gradients as the
    reference, every input."""
    _check_interpret(batch, length, dim, n, groups, dtype, (True, True, True), softplus, True,
                     layout)


@pytest.mark.parametrize("b_dtype,c_dtype", [(jnp.bfloat16, jnp.float32),
                                             (jnp.float32, jnp.bfloat16)])
def test_mixed_bc_dtypes_interpret(b_dtype, c_dtype):
    """B and C of different dtypes through the split forward and the segmented backward:
    values and every gradient, in each input's dtype."""
    u, delta, A, B, C, D, z, bias = random_inputs(jax.random.PRNGKey(3), 2, 24, 32, 4)
    args = (u, delta, A, B.astype(b_dtype), C.astype(c_dtype), D, z, bias)
    check_against_reference(args, dict(delta_softplus=True, return_last_state=True),
                            dict(interpret=True, bwd_segments=2, split=2, delta_tile=True),
                            tol=1e-5, grad_tol=1e-4)


def test_backward_block_and_warps():
    """hybrid's backward takes its own block and warps; one warp turns on its delta tiles;
    the forward keeps its 32-channel warp; other variants refuse the overrides."""
    from pallas_kernels.selective_scan.fused import _bwd_layout
    lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=1, bwd_block_d=16,
                        bwd_num_warps=1)
    assert (lay.block_d, lay.bwd_block_d, lay.bwd_num_warps, lay.group_width) == (32, 16, 1, 1536)
    bwd = _bwd_layout(lay)
    assert (bwd.block_d, bwd.delta_tile) == (16, True)
    assert not _bwd_layout(choose_layout(4096, 1536, 16, 1, "gpu", False, batch=1)).delta_tile
    with pytest.raises(ValueError, match="bwd_block_d"):
        choose_layout(64, 32, 16, 1, "gpu", False, variant="tiles", bwd_block_d=16)
    with pytest.raises(ValueError, match="bwd_block_d must be a power of two"):
        choose_layout(64, 32, 16, 1, "gpu", False, bwd_block_d=12)
    with pytest.raises(ValueError, match="bwd_num_warps must be a power of two"):
        choose_layout(64, 32, 16, 1, "gpu", False, bwd_num_warps=3)


def test_serial_group_backward_warps():
    """hybrid's backward at N 16 (D 1536, L 4096): one warp of 16 channels a program, the
    state saved every 4 chunks, from batch 8 (BWD_PROGRAMS); as one of several serial state
    groups from batch 2 (SERIAL_BWD_PROGRAMS, run 93); else two warps of 32, every chunk."""
    for batch, serial, expected in ((8, False, (16, 1, 4)), (4, False, (32, 2, 1)),
                                    (4, True, (16, 1, 4)), (2, True, (16, 1, 4)),
                                    (1, True, (32, 2, 1))):
        lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=batch, serial=serial)
        assert (lay.bwd_block_d, lay.bwd_num_warps, lay.state_every) == expected, (batch, serial)


@pytest.mark.parametrize("batch,parts,n,dim", [(1, 6, 16, 64), (2, 5, 8, 40), (1, 1, 2, 16)])
def test_link_kernel_matches_a_loop(batch, parts, n, dim):
    """The state entering each segment from a first pass's parts, against a plain loop:
    forward h_{q+1} = exp(A s_q) h_q + e_q from 0; backward g_q = exp(A s_q) g_{q+1} + e_q
    from dlast (N over several programs at N 16 and 8, D 40 in 8-channel blocks)."""
    from pallas_kernels.selective_scan.fused import _link_call
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    A_T = -jnp.exp(jax.random.normal(keys[0], (n, dim)))
    e = jax.random.normal(keys[1], (batch, parts, n, dim))
    s = jax.random.uniform(keys[2], (batch, parts, 1, dim), maxval=2.0)
    dlast = jax.random.normal(keys[3], (batch, n, dim))
    lay = choose_layout(64, dim, n, 1, "gpu", True)
    decay = np.exp(np.asarray(A_T)[None, None] * np.asarray(s))          # (batch, Q, N, D)
    h, want = np.zeros((batch, n, dim), np.float32), [np.zeros((batch, n, dim))]
    for q in range(parts):
        h = decay[:, q] * h + np.asarray(e)[:, q]
        want.append(h)
    got = _link_call(lay, A_T, e, s)
    np.testing.assert_allclose(got, np.stack(want, 1), rtol=1e-5, atol=1e-5)
    g, want = np.asarray(dlast), [np.asarray(dlast)]
    for q in reversed(range(parts)):
        g = decay[:, q] * g + np.asarray(e)[:, q]
        want.insert(0, g)
    got = _link_call(lay, A_T, e, s, first=dlast)
    np.testing.assert_allclose(got, np.stack(want, 1), rtol=1e-5, atol=1e-5)


def test_segments_need_the_lanes_forward():
    args = random_inputs(jax.random.PRNGKey(0), 1, 5, 4, 2)
    with pytest.raises(ValueError, match="segments"):
        selective_scan_pallas(*args, variant="tiles", segments=2, interpret=True)
    with pytest.raises(ValueError, match="bwd_segments"):
        selective_scan_pallas(*args, variant="lanes", bwd_segments=2, interpret=True)


def test_tiles_variant_rejects_tpu_layout():
    args = random_inputs(jax.random.PRNGKey(0), 1, 5, 4, 2)
    with pytest.raises(ValueError, match="tiles"):
        selective_scan_pallas(*args, platform="tpu", variant="tiles", interpret=True)
    with pytest.raises(ValueError, match="variant"):
        selective_scan_pallas(*args, variant="v9", interpret=True)


def test_default_segments_from_batch_dim_and_length():
    """The lanes forward's time segments: enough programs (batch x D / 32 x P >= 6144), at
    most 32, with segments of >= 128 steps; none for the tiles variant; an explicit value
    wins. Its loop walks 2 steps an iteration when segmented (N = 16), else 4. hybrid's
    backward is cut by the same rule."""
    def layout(length, dim, batch, n_state=16, **kw):
        return choose_layout(length, dim, n_state, 1, "gpu", False, batch=batch, **kw)
    assert layout(4096, 1536, 8, split=1).segments == 16     # 384 programs -> 6144
    assert layout(16384, 1536, 1).segments == 32         # 48 -> 1536: at most 32
    assert layout(2048, 1536, 1).segments == 16          # 128-step segments
    assert layout(2048, 1536, 8, split=1).segments == 16
    assert layout(200, 1536, 1).segments == 1
    assert layout(4096, 1536, 128, split=1).segments == 1    # already 6144 programs
    assert layout(4096, 1536, 8, segments=1).segments == 1
    assert layout(4096, 1536, 8, variant="tiles").segments == 1
    assert layout(4096, 1536, 8, split=1).unroll == 2 and layout(200, 1536, 1).unroll == 4
    assert layout(4096, 1536, 8, split=1, unroll=4).unroll == 4
    # batch x D / 8 >= 1536 programs: a channel's 16 states on 4 lanes, unsegmented, U = 8
    default = layout(4096, 1536, 8)
    assert (default.split, default.segments, default.unroll, default.block_d) == (4, 1, 8, 8)
    assert default.delta_tile                            # delta on (4, 8) tiles of 4 steps
    assert not layout(4096, 1536, 1).delta_tile          # S 1: nothing to share
    assert not layout(4096, 1536, 8, delta_tile=False).delta_tile
    with pytest.raises(ValueError, match="delta_tile"):
        layout(4096, 1536, 8, split=1, delta_tile=True)
    assert layout(4096, 1536, 4).split == 1 and layout(4096, 1536, 1).split == 1
    assert layout(4096, 1536, 8, segments=16).split == 1     # an explicit layout keeps S 1
    assert layout(4096, 1536, 16, n_state=8).split == 2     # 16 x 1536 / 16 programs
    # hybrid's backward by the same rule; 1 (or another variant) turns it off
    assert layout(4096, 1536, 8).bwd_segments == 16
    assert layout(16384, 1536, 1, segments=1).bwd_segments == 32
    assert layout(200, 1536, 1).bwd_segments == 1
    assert layout(4096, 1536, 8, bwd_segments=1).bwd_segments == 1
    assert layout(4096, 1536, 8, variant="lanes").bwd_segments == 1


def test_hybrid_layout_above_16_states():
    """hybrid above N = 16 (the GPU default at every N): at most 16 states a lane, S =
    N_pad / 16 lanes a channel or more (up to N_pad / 4) until there are 1536 programs, else
    S = N_pad / 16 with segments; its tiles backward in the tiles variant's block and chunk,
    unsegmented. N <= 16 as before."""
    def layout(n, batch, **kw):
        return choose_layout(4096, 1536, n, 1, "gpu", False, batch=batch, **kw)

    def fields(lay):
        return (lay.split, lay.block_d, lay.unroll, lay.segments, lay.chunk, lay.bwd_block_d,
                lay.bwd_num_warps, lay.bwd_segments, lay.state_every)
    tiles = {n: layout(n, 8, variant="tiles") for n in (32, 64, 128)}
    assert {layout(n, b).variant for n in (16, 32, 64, 128, 256) for b in (1, 8)} == {"hybrid"}
    assert fields(layout(32, 8)) == (4, 8, 4, 1, 4, 32, 4, 1, 1)        # J 8: 1536 programs
    assert fields(layout(64, 8)) == (4, 8, 2, 1, 4, 16, 4, 1, 1)        # J 16
    assert fields(layout(128, 8)) == (8, 4, 2, 1, 2, 8, 4, 1, 1)
    assert fields(layout(256, 8))[:2] == (16, 2)
    for n in (32, 64, 128):                  # the backward's block and chunk are tiles'
        lay = layout(n, 8)
        assert (lay.bwd_block_d, lay.chunk) == (tiles[n].block_d, tiles[n].chunk)
    assert fields(layout(32, 1))[:4] == (2, 16, 1, 32)                 # J 16, segmented
    assert fields(layout(64, 1))[:4] == (4, 8, 1, 32)
    assert fields(layout(128, 1))[:4] == (32, 1, 8, 1)                 # 1536 programs at J 4
    assert layout(32, 8, wide_inputs=True).chunk == 2
    assert fields(layout(16, 8))[:2] == (4, 8) and fields(layout(16, 1))[:2] == (1, 32)


def test_segmented_backward_first_pass_unroll():
    """The segmented backward's first pass walks U steps an iteration, holding (2 + U) x N
    values a lane: the forward's U where that is at most ADJOINT_VALUES (160), else the
    largest divisor of it that fits (1 at least). The default layouts at D 1536, L 4096."""
    from pallas_kernels.selective_scan import fused

    def adjoint_u(n, batch, **kw):
        lay = choose_layout(4096, 1536, n, 1, "gpu", False, batch=batch, **kw)
        return lay.unroll, fused._adjoint_unroll(lay)
    assert adjoint_u(16, 8) == (8, 8)            # N 16, batch 8: kept (168 registers)
    assert adjoint_u(16, 1) == (2, 2)
    assert adjoint_u(32, 4) == (8, 2)            # was the forward's 8
    assert adjoint_u(64, 2) == (8, 1)            # was 8: 6470 spill bytes (run 67)
    assert adjoint_u(32, 1) == (1, 1) and adjoint_u(64, 1) == (1, 1)
    assert adjoint_u(16, 8, unroll=16) == (16, 8)
    assert adjoint_u(256, 1, bwd_segments=2, unroll=4) == (4, 1)


def test_hybrid_above_16_states_hands_the_tiles_layout_its_backward():
    """Above N = 16 hybrid's backward is the tiles variant's backward (the same layout field
    for field, B and C as given); its gradient's forward is hybrid's own where a warp's state
    row is a 32-byte sector or more (>= 8 channels); with fewer, hybrid's with 8 channels a
    warp where that keeps J <= 32 states a lane and SPLIT_PROGRAMS programs (N 128 at batch
    8: S 4 instead of 8), else the tiles forward in the backward's layout. The segmented
    backward (the default up to N 64 where programs are few, e.g. batch 1) stays hybrid's. At
    N <= 16 nothing changes."""
    from pallas_kernels.selective_scan.fused import _bwd_layout, _residual_layout

    def layout(n, batch, **kw):
        return choose_layout(4096, 1536, n, 1, "gpu", False, batch=batch, **kw)

    def backward_fields(lay):
        return (lay.variant, lay.block_d, lay.chunk, lay.bwd_num_warps, lay.state_every,
                lay.bc_atomic, lay.split, lay.delta_tile, lay.group_width, lay.time_block)
    for n, batch in ((32, 8), (64, 8), (128, 8), (256, 8), (128, 1)):
        hybrid, tiles = layout(n, batch), layout(n, batch, variant="tiles")
        assert backward_fields(_bwd_layout(hybrid)) == backward_fields(_bwd_layout(tiles))
        residual = _residual_layout(hybrid, batch)
        if hybrid.block_d >= 8:
            assert residual == hybrid
        elif (n, batch) == (128, 8):                 # 8 channels a warp, J 32, one step
            assert residual == layout(n, batch, split=4, unroll=1)
            assert residual.block_d == 8 and backward_fields(_bwd_layout(residual)) == \
                backward_fields(_bwd_layout(tiles))
        else:
            assert residual == _bwd_layout(hybrid)._replace(
                segments=1, unroll=hybrid.chunk, num_warps=tiles.num_warps, bwd_block_d=0)
            assert backward_fields(residual) == backward_fields(tiles)
    assert [_residual_layout(layout(n, 8), 8).variant for n in (32, 64, 128, 256)] == [
        "hybrid", "hybrid", "hybrid", "tiles"]                # N 256: J 64 would be > 32
    assert _residual_layout(layout(128, 4), 4).variant == "tiles"    # 768 programs at S 4
    sixteen = layout(16, 8)
    assert _bwd_layout(sixteen).variant == "hybrid" and _residual_layout(sixteen, 8) == sixteen
    # with a segmented backward: 8 channels a warp in its P segments (run 68, NOTES.md v35)
    assert (layout(64, 2).block_d, layout(32, 4).block_d) == (2, 4)
    assert _residual_layout(layout(64, 2), 2) == layout(64, 2, split=4, segments=32)
    assert _residual_layout(layout(32, 4), 4) == layout(32, 4, split=4, segments=32)
    assert _residual_layout(layout(32, 4), 4).unroll == 2                  # J 8
    segmented = layout(64, 8, bwd_segments=2)       # its first pass needs hybrid's B, C
    assert _bwd_layout(segmented).variant == "hybrid"
    assert _residual_layout(segmented, 8) == segmented
    # segmented by default up to N 64 where there are fewer than 384 programs (48 a batch
    # row; run 70, NOTES.md v36)
    assert [layout(n, b).bwd_segments for n in (32, 64, 128) for b in (1, 4, 7, 8)] == [
        32, 32, 32, 1, 32, 32, 32, 1, 1, 1, 1, 1]
    assert layout(64, 1, bwd_segments=1).bwd_segments == 1
    # one-warp backward programs asked for above N = 16 keep every chunk's state (m 1):
    # m = N_pad / T (written for N 16) would be 64 chunk starts a block at N 128
    assert layout(128, 8, bwd_block_d=4, bwd_num_warps=1).state_every == 1
    assert layout(16, 8).state_every == 4


def test_bc_atomic_default_from_256_states():
    """The tiles backward adds dB, dC by atomics by default from N_pad 256 on the GPU
    (faster and 26 GB smaller there, run 60); an explicit value wins; never on TPU."""
    def atomic(n, **kw):
        return choose_layout(4096, 1536, n, 1, kw.pop("platform", "gpu"), False, batch=8,
                             **kw).bc_atomic
    assert [atomic(n) for n in (16, 64, 128, 200, 256)] == [False, False, False, True, True]
    assert atomic(256, variant="tiles") and not atomic(256, bc_atomic=False)
    assert atomic(64, bc_atomic=True)
    assert not atomic(256, platform="tpu") and not atomic(256, variant="lanes")


def _softplus_reference(x):
    x = np.asarray(x, np.float64)
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def test_kernel_softplus_and_sigmoid_match_float64():
    """The kernels' softplus (exp2, log2 of 1 + e or a 5-term series for e <= 1/16) and
    sigmoid (exp2): relative error against float64 over the range delta takes."""
    from pallas_kernels.selective_scan.kernel import _sigmoid, _softplus
    x = jnp.linspace(-40.0, 40.0, 200_001, dtype=jnp.float32)
    ref = _softplus_reference(x)
    # float32 rounding of x log2(e) alone gives 6e-8 |x log2 e|: 3.5e-6 at |x| = 40
    assert np.max(np.abs(np.asarray(_softplus(x), np.float64) - ref) / ref) < 3e-6
    sig = 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
    assert np.max(np.abs(np.asarray(_sigmoid(x), np.float64) - sig) / sig) < 3e-6


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
def test_kernel_softplus_fast_math_compiled_gpu():
    """softplus with the GPU's lg2.approx (the compiled kernels' path), inside a kernel."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton
    from pallas_kernels.selective_scan.kernel import _softplus
    x = jnp.linspace(-40.0, 40.0, 1 << 17, dtype=jnp.float32)

    def kernel(x_ref, o_ref):
        o_ref[...] = _softplus(x_ref[...], fast=True)
    got = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                         grid=(x.size // 1024,), in_specs=[pl.BlockSpec((1024,), lambda i: (i,))],
                         out_specs=pl.BlockSpec((1024,), lambda i: (i,)),
                         compiler_params=pltriton.CompilerParams(num_warps=4))(x)
    ref = _softplus_reference(x)
    assert np.max(np.abs(np.asarray(got, np.float64) - ref) / ref) < 1e-5


def _check_interpret(batch, length, dim, n, groups, dtype, opts, softplus, last, layout):
    args = random_inputs(jax.random.PRNGKey(length * 31 + dim), batch, length, dim, n, groups,
                         dtype, *opts, for_softplus=softplus)
    kwargs = dict(delta_softplus=softplus, return_last_state=last)
    f32 = dtype == jnp.float32
    check_against_reference(args, kwargs, dict(interpret=True, **layout),
                            tol=1e-5 if f32 else 1e-2, grad_tol=1e-4 if f32 else 3e-2)


def test_default_layout_forward_interpret():
    """The default layout (T = 16 unrolled steps): forward values, bf16 and the last state."""
    args = random_inputs(jax.random.PRNGKey(5), 1, 19, 6, 4, None, jnp.bfloat16)
    kwargs = dict(delta_softplus=True, return_last_state=True)
    out, last = selective_scan_pallas(*args, **kwargs, interpret=True)
    out_ref, last_ref = selective_scan_ref(*args, **kwargs)
    assert out.dtype == jnp.bfloat16 and rel_err(out, out_ref) < 1e-2
    assert rel_err(last, last_ref) < 1e-5


def _equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs inside its equations."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)


def _array_shapes(jaxpr):
    """Shapes of every value a jaxpr (and the jaxprs inside its equations) produces."""
    for eqn in _equations(jaxpr):
        for v in eqn.outvars:
            yield tuple(v.aval.shape)


def _array_sizes(jaxpr):
    """Sizes of every value a jaxpr (and the jaxprs inside its equations) produces."""
    for shape in _array_shapes(jaxpr):
        yield math.prod(shape)


def test_no_per_state_tensor_in_memory():
    """Forward and backward keep nothing of size (batch, L, D, N): the largest array in the
    jaxpr of the gradient is (batch, L, D) or the chunk-start states (batch, L/T, N, D)."""
    batch, length, dim, n = 2, 64, 32, 16
    args = random_inputs(jax.random.PRNGKey(0), batch, length, dim, n)
    fn = lambda *a: jnp.sum(selective_scan_pallas(*a, delta_softplus=True, interpret=True))
    jaxpr = jax.make_jaxpr(jax.grad(fn, argnums=(0, 1, 2, 3, 4, 5, 6, 7)))(*args)

    largest = max(_array_sizes(jaxpr.jaxpr))
    chunk = choose_layout(length, dim, n, 1, "gpu", True).chunk
    assert largest <= max(batch * length * dim, batch * length * dim * n // chunk), largest
    assert largest <= batch * length * dim * n // 4


@pytest.mark.parametrize("batch,length,dim,n,dtype,opts,layout", [
    pytest.param(1, 37, 16, 4, jnp.float32, (True, True, True),
                 dict(variant="hybrid", state_every=2, segments=1, bwd_segments=1),
                 id="hybrid-m2"),
    pytest.param(2, 53, 32, 16, jnp.float32, (True, True, True),
                 dict(variant="hybrid", state_every=4, bwd_segments=2, bwd_block_d=16,
                      bwd_num_warps=1, split=4, delta_tile=True, unroll=4),
                 id="hybrid-m4-split4-bwdseg2-w1"),
    pytest.param(1, 29, 12, 5, jnp.bfloat16, (True, False, True),
                 dict(variant="hybrid", state_every=3, segments=2, bwd_segments=2),
                 id="bf16-hybrid-m3-seg2"),
    pytest.param(1, 37, 16, 4, jnp.float32, (True, False, False),
                 dict(variant="tiles", state_every=3, chunk=4), id="tiles-m3"),
])
def test_states_saved_every_m_chunks_interpret(batch, length, dim, n, dtype, opts, layout):
    """state_every = m: the forward keeps the state before every m-th chunk only and the
    tiles backward recomputes the starts between (a block sweep into its buffer): values,
    last state and every gradient as the reference, L not a multiple of m T."""
    _check_interpret(batch, length, dim, n, None, dtype, opts, True, True, layout)


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,opts,layout", [
    pytest.param(2, 37, 16, 8, None, jnp.float32, (True, True, True),
                 dict(state_groups=2), id="S2-all"),
    pytest.param(1, 29, 24, 7, 3, jnp.float32, (True, False, True),
                 dict(state_groups=3, variant="hybrid", segments=1), id="S3-N7-padded-grouped3"),
    # side by side with the tiles forward and grouped B, C: N100-grouped, N200-grouped-bc-atomic
    # (test_default_above_16_states_awkward_shapes_interpret); the TPU layout and bf16 run
    # as serial groups below (the same kernels, adding into the running sums)
    pytest.param(1, 29, 24, 7, 3, jnp.float32, (True, False, True),
                 dict(state_groups=3, serial_groups=True, variant="hybrid", segments=1,
                      state_every=2), id="serial-S3-N7-padded-grouped3-m2"),
    pytest.param(2, 23, 12, 5, 2, jnp.bfloat16, (True, True, False),
                 dict(state_groups=2, serial_groups=True, variant="tiles"),
                 id="serial-bf16-S2-N5-grouped2"),
    pytest.param(1, 21, 8, 6, None, jnp.float32, (False, True, True),
                 dict(state_groups=3, serial_groups=True, platform="tpu"),
                 id="serial-S3-tpu-layout"),
    pytest.param(2, 1, 8, 6, None, jnp.float32, (True, True, True),
                 dict(state_groups=2, serial_groups=True), id="serial-L1"),
    pytest.param(1, 21, 8, 6, None, jnp.float32, (True, True, True),
                 dict(state_groups=2, serial_groups=True, variant="lanes"),
                 id="serial-S2-lanes"),
    # the default groups of 16 (S = 3, each saving its state every 4 x T steps): in
    # test_undifferentiated_call_apart_from_the_gradient_interpret[40-1], whose gradient
    # runs them through the default
    # ... and the forward and the tiles backward in 2 time segments, each program adding
    # into its part of the sums
    pytest.param(1, 64, 16, 32, None, jnp.float32, (True, True, True),
                 dict(serial_groups=True, segments=2, bwd_segments=2), id="serial-N32-seg2"),
])
def test_state_groups_interpret(batch, length, dim, n, groups, dtype, opts, layout):
    """state_groups = S: the scan as S scans of ceil(N / S) states over the same channels
    (N padded with zero states), their outputs and gradients summed, side by side over S
    copies of the channels or one after another (serial_groups): values, last state and
    every gradient as the reference, grouped B, C and the z gate included."""
    _check_interpret(batch, length, dim, n, groups, dtype, opts, True, True, layout)


def _pallas_rows(jaxpr, length, width):
    """[(side, dtype)] of the pallas_call inputs ("in") and outputs ("out") shaped (batch,
    L_pad >= length, width), in a jaxpr and the jaxprs inside it."""
    return [(side, v.aval.dtype) for eqn in _equations(jaxpr)
            if eqn.primitive.name == "pallas_call"
            for side, vs in (("in", eqn.invars), ("out", eqn.outvars)) for v in vs
            if len(v.aval.shape) == 3 and v.aval.shape[1] >= length
            and v.aval.shape[2] == width]


def test_state_groups_sum_float32_partials():
    """With S groups of states and bf16 inputs the kernels read u, delta, z (and dout) for
    the S D channels in bf16 (no float32 copies) and write out, du, ddelta, dz in float32:
    the partial sums are added in float32, then rounded once."""
    batch, length, dim, n, S = 1, 32, 16, 8, 2
    args = random_inputs(jax.random.PRNGKey(3), batch, length, dim, n, None, jnp.bfloat16,
                         True, True, True)
    fn = lambda *a: jnp.sum(selective_scan_pallas(*a, delta_softplus=True, interpret=True,
                                                  state_groups=S).astype(jnp.float32))
    jaxpr = jax.make_jaxpr(jax.grad(fn, argnums=(0, 1, 6)))(*args).jaxpr
    rows = _pallas_rows(jaxpr, length, S * dim)
    ins = [dtype for side, dtype in rows if side == "in"]
    outs = [dtype for side, dtype in rows if side == "out"]
    # forward: u, delta, z in, out out; backward: u, delta, z, dout in, du, ddelta, dz out
    assert len(ins) >= 7 and all(dtype == jnp.bfloat16 for dtype in ins), rows
    assert len(outs) >= 4 and all(dtype == jnp.float32 for dtype in outs), rows


def test_serial_state_groups_keep_one_copy():
    """serial_groups: the kernels run inside a ``lax.scan`` over the S groups and read and
    write (batch, L, D) rows only (no S D copies of u, delta, z or of their gradients);
    their outputs are float32 partial sums as side by side."""
    batch, length, dim, n, S = 1, 32, 16, 8, 2
    args = random_inputs(jax.random.PRNGKey(3), batch, length, dim, n, None, jnp.bfloat16,
                         True, True, True)
    fn = lambda *a: jnp.sum(selective_scan_pallas(
        *a, delta_softplus=True, interpret=True, state_groups=S,
        serial_groups=True).astype(jnp.float32))
    jaxpr = jax.make_jaxpr(jax.grad(fn, argnums=(0, 1, 6)))(*args).jaxpr
    assert not _pallas_rows(jaxpr, length, S * dim)
    rows = _pallas_rows(jaxpr, length, dim)
    assert [dtype for side, dtype in rows if side == "out"].count(jnp.float32) >= 4, rows
    group_scans = _group_scans(jaxpr, S)
    assert len(group_scans) == 2
    # the forward adds its out into the running sum in the kernel (an input aliased to its
    # output 0: the last pass's call where the forward is segmented), not in an add a group
    fwd = group_scans[0].params["jaxpr"].jaxpr
    aliased = [e.params["input_output_aliases"] for e in _equations(fwd)
               if e.primitive.name == "pallas_call" and e.params["input_output_aliases"]]
    assert len(aliased) == 1 and [o for _, o in aliased[0]] == [0], aliased
    assert not [e for e in _equations(fwd) if e.primitive.name == "add"
                and e.outvars[0].aval.ndim == 3 and e.outvars[0].aval.shape[2] == dim]
    # the backward adds du, ddelta, dz into the running sums in the kernel (inputs aliased
    # to its first 3 outputs), not in a float32 add of its outputs a group
    bwd = group_scans[1].params["jaxpr"].jaxpr
    calls = [e for e in _equations(bwd) if e.primitive.name == "pallas_call"]
    assert len(calls) == 1
    n_in = len(calls[0].invars)
    assert sorted(calls[0].params["input_output_aliases"]) == [(n_in - 3 + i, i)
                                                               for i in range(3)]
    assert not [e for e in _equations(bwd) if e.primitive.name == "add"
                and e.outvars[0].aval.ndim == 3 and e.outvars[0].aval.shape[2] == dim]


def _group_scans(jaxpr, S):
    """The ``lax.scan``s over S groups that run pallas_calls: the forward's, the backward's."""
    return [eqn for eqn in _equations(jaxpr)
            if eqn.primitive.name == "scan" and eqn.params["length"] == S
            and any(e.primitive.name == "pallas_call"
                    for e in _equations(eqn.params["jaxpr"].jaxpr))]


def _groups_run(fn, args, S):
    """(side-by-side copies, serial group scans) of fn's jaxpr: the width of its widest
    pallas_call rows over D, and the number of ``lax.scan``s over S groups."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    _, length, dim = args[0].shape
    widths = [eqn.outvars[0].aval.shape[2] for eqn in _equations(jaxpr)
              if eqn.primitive.name == "pallas_call" and eqn.outvars[0].aval.ndim == 3
              and eqn.outvars[0].aval.shape[1] >= length]
    return max(widths) // dim, len(_group_scans(jaxpr, S))


def test_undifferentiated_call_runs_the_faster_groups():
    """Where the default runs serial groups of 16 for the memory of forward + backward (bf16
    batch 8 L 4096 D 1536 from N 64), an undifferentiated call saves no states and runs the
    faster layouts where they hold at most 2 GiB beyond serial: N 64 in one group, N 128 as
    4 groups of 32 side by side (1.6 GB); N 256's 8 copies (3.2 GB) stay serial. The
    gradient runs serial groups at each N; an explicit serial_groups=True is kept. Traced,
    not run."""
    from pallas_kernels.selective_scan.fused import SERIAL_GROUP_STATES
    for n, copies in ((64, 1), (128, 4), (256, None)):
        args = jax.eval_shape(lambda: random_inputs(
            jax.random.PRNGKey(0), 8, 4096, 1536, n, None, jnp.bfloat16, True, True, True))
        S = n // SERIAL_GROUP_STATES

        def call(*a, **kw):
            return selective_scan_pallas(*a, delta_softplus=True, interpret=True,
                                         platform="gpu", **kw)
        loss = lambda *a: jnp.sum(call(*a).astype(jnp.float32))
        assert _groups_run(jax.grad(loss, argnums=(0, 1)), args, S) == (1, 2), n
        forward = _groups_run(call, args, S)
        assert forward == ((copies, 0) if copies else (1, 1)), (n, forward)
        assert _groups_run(functools.partial(call, serial_groups=True), args, S) == (1, 1)


def _check_apart(n, copies, shape, interpret, gradients, tol):
    """The serial default forced (the caller patches ``_serial_by_default``): the
    undifferentiated call runs ``copies`` copies of the channels and no group scan and
    matches the reference (values and last state); a gradient runs the serial groups and
    (``gradients``) matches it too (values and every gradient)."""
    from pallas_kernels.selective_scan import fused
    args = random_inputs(jax.random.PRNGKey(n), *shape, n, None, jnp.float32,
                         True, True, True)
    kwargs = dict(delta_softplus=True, return_last_state=True)
    call = functools.partial(selective_scan_pallas, **kwargs, interpret=interpret)
    S = -(-n // fused.SERIAL_GROUP_STATES)
    assert _groups_run(call, args, S) == (copies, 0)
    out, last = jax.jit(call)(*args)
    out_ref, last_ref = selective_scan_ref(*args, **kwargs)
    assert rel_err(out, out_ref) < tol and rel_err(last, last_ref) < tol
    loss = lambda *a: jnp.sum(call(*a)[0])
    assert _groups_run(jax.grad(loss, argnums=(0, 1)), args, S) == (1, 2)
    if gradients:
        check_against_reference(args, kwargs, dict(interpret=interpret), tol=tol,
                                grad_tol=10 * tol)


@pytest.mark.parametrize("n,copies,length", [(40, 1, 64), (72, 3, 29)])
def test_undifferentiated_call_apart_from_the_gradient_interpret(n, copies, length,
                                                                 monkeypatch):
    """The serial default forced at a small shape: the undifferentiated call runs the
    faster layout (one group at N 40, 3 groups of 32 side by side at N 72), a gradient the
    serial groups, both as the reference. The gradients are checked at N 40: the default
    groups of 16, S = 3, each saving its state every 4 x T steps (16: L 64 walks 4
    blocks of them), D skip, z, delta_bias, the last state."""
    from pallas_kernels.selective_scan import fused
    monkeypatch.setattr(fused, "_serial_by_default", lambda *a: True)
    _check_apart(n, copies, (1, length, 16), True, n == 40, 1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
@pytest.mark.parametrize("n,copies", [(40, 1), (72, 3)])
def test_undifferentiated_call_apart_from_the_gradient_compiled_gpu(n, copies, monkeypatch):
    """As the interpret test, compiled: values and gradients at both N."""
    from pallas_kernels.selective_scan import fused
    monkeypatch.setattr(fused, "_serial_by_default", lambda *a: True)
    _check_apart(n, copies, (2, 600, 64), False, True, 1e-4)


@pytest.mark.parametrize("batch,floats", [(1, (4, 4)), (4, (1, 2)), (8, (1, 1))])
def test_serial_state_groups_memory_does_not_grow_with_n(batch, floats):
    """serial_groups with the tiles backward: each group saves its state S x less often
    than one group alone (state_every pow2(S) m0), so the saved states of all groups together
    are 4 / m0 floats a (t, d) whatever N (``floats``, at N 64 and N 256, L 4096, D 1536):
    m0 = 4 with one-warp backward programs (batch 4 and 8), m0 = 1 at batch 1. At batch 4
    N 256 m is halved to 32 (2 floats): its backward's 32 time segments x 64 chunks would
    pad L 4096 to 8192 (SERIAL_PAD). At L 5000 the padded length stays that of one group's
    layout (5120), with fewer steps between saved states. Traced, not run."""
    dim = 1536
    for n, expected in zip((64, 256), floats):
        for length in (4096, 5000):
            args = jax.eval_shape(lambda: random_inputs(
                jax.random.PRNGKey(0), batch, length, dim, n, None, jnp.bfloat16,
                True, True, True))
            fn = lambda *a: jnp.sum(selective_scan_pallas(
                *a, delta_softplus=True, interpret=True, platform="gpu",
                serial_groups=True).astype(jnp.float32))
            jaxpr = jax.make_jaxpr(jax.grad(fn, argnums=(0, 1)))(*args).jaxpr
            fwd = _group_scans(jaxpr, n // 16)[0]
            (saved,) = [v.aval.shape for v in fwd.outvars if v.aval.ndim == 5]
            (out,) = [v.aval.shape for v in fwd.outvars if v.aval.ndim == 3]
            got = math.prod(saved) / (batch * out[1] * dim)
            if length == 4096:
                assert got == expected, (n, saved)
            else:
                assert out[1] == 5120 and got <= 4 * max(floats), (n, saved)


def test_state_groups_default_and_checks():
    """S = ceil(N / GROUP_STATES) above GROUPS_ABOVE on the GPU layout for the
    tiles-backward variants, 1 on TPU and for v2 / lanes; serial_groups=True: ceil(N /
    SERIAL_GROUP_STATES) on every layout, and by default where the faster layouts' memory
    would be large; a bad state_groups or serial_groups is refused naming the argument."""
    from pallas_kernels.selective_scan.fused import (GROUP_STATES, GROUPS_ABOVE,
                                                     SERIAL_GROUP_STATES, _state_groups)
    above = GROUPS_ABOVE + 1
    assert _state_groups(GROUPS_ABOVE, "gpu", None, None, None) == (1, False)
    assert _state_groups(above, "gpu", None, None, None) == (-(-above // GROUP_STATES), False)
    assert _state_groups(8 * GROUP_STATES, "gpu", "tiles", None, False) == (8, False)
    assert _state_groups(8 * GROUP_STATES, "tpu", None, None, None) == (1, False)
    assert _state_groups(8 * GROUP_STATES, "gpu", "lanes", None, None) == (1, False)
    assert _state_groups(128, "tpu", None, None, True) == (128 // SERIAL_GROUP_STATES, True)
    assert _state_groups(128, "gpu", None, 2, True) == (2, True)
    assert _state_groups(128, "gpu", None, 1, True) == (1, False)
    # serial_groups None: serial groups of 16 where the faster layouts would hold more than
    # 2 GiB beyond them, 1.6 (N - 16) bytes a (b, t, d): bf16 batch 8 L 4096 D 1536 from
    # N 64 on (N 32 keeps one group); 8 GiB where one group's backward has fewer than 384
    # 32-channel programs (batch 4, or batch 8 at D 768: N 128 keeps the faster layouts,
    # batch 4 N 256 not; batch 1 at L 65536 from N 128); never an explicit state_groups,
    # serial_groups=False, TPU or the v2 / lanes backward
    protocol = (8, 4096, 1536, 1)
    assert _state_groups(32, "gpu", None, None, None, protocol) == (1, False)
    assert _state_groups(64, "gpu", None, None, None, protocol) == (4, True)
    assert _state_groups(128, "gpu", "hybrid", None, None, protocol) == (8, True)
    assert _state_groups(128, "gpu", None, None, None, (8, 4096, 768, 1)) == (4, False)
    assert _state_groups(128, "gpu", None, None, None, (4, 4096, 1536, 1)) == (4, False)
    assert _state_groups(256, "gpu", None, None, None, (4, 4096, 1536, 1)) == (16, True)
    assert _state_groups(256, "gpu", None, None, None, (1, 4096, 1536, 1)) == (8, False)
    assert _state_groups(128, "gpu", None, None, None, (1, 65536, 1536, 1)) == (8, True)
    assert _state_groups(128, "gpu", None, None, False, protocol) == (4, False)
    assert _state_groups(128, "gpu", None, 2, None, protocol) == (2, False)
    assert _state_groups(128, "tpu", None, None, None, protocol) == (1, False)
    assert _state_groups(128, "gpu", "lanes", None, None, protocol) == (1, False)
    assert _state_groups(16, "gpu", None, None, None, (1 << 10, 1 << 20, 1536, 1)) == (1, False)
    with pytest.raises(ValueError, match="serial_groups"):
        _state_groups(128, "gpu", None, None, "yes")
    args = random_inputs(jax.random.PRNGKey(0), 1, 8, 4, 4, None, jnp.float32)
    for bad in (0, 5, 1.5):
        with pytest.raises(ValueError, match="state_groups"):
            selective_scan_pallas(*args, interpret=True, state_groups=bad)


@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,opts,layout", [
    pytest.param(2, 37, 96, 4, 3, jnp.float32, (True, True, True),
                 dict(variant="hybrid", bc_atomic=True, segments=1, bwd_segments=1,
                      bwd_block_d=16, bwd_num_warps=1), id="hybrid-grouped3-2blocks"),
    pytest.param(2, 53, 32, 16, None, jnp.float32, (True, False, True),
                 dict(variant="hybrid", bc_atomic=True, bwd_segments=2, bwd_block_d=16,
                      bwd_num_warps=1), id="hybrid-bwdseg2-w1-4blocks"),
    pytest.param(1, 29, 12, 5, 2, jnp.bfloat16, (True, True, False),
                 dict(variant="tiles", bc_atomic=True, block_d=2), id="bf16-tiles-grouped2"),
])
def test_bc_atomic_sums_db_dc_in_the_kernel_interpret(batch, length, dim, n, groups, dtype,
                                                      opts, layout):
    """bc_atomic: every channel block adds its dB, dC tiles into its group's (N, L) sum
    (atomic adds into outputs aliased to zeros) instead of writing partials: values and
    every gradient as the reference, with several blocks a group, grouped B, C and
    backward segments."""
    _check_interpret(batch, length, dim, n, groups, dtype, opts, True, True, layout)


def test_bc_atomic_keeps_no_per_block_partials():
    """With bc_atomic no (batch, D / bd, N, L) array is made: the largest dB, dC array in
    the gradient's jaxpr is (batch, G, N, L)."""
    batch, length, dim, n = 1, 64, 64, 16
    args = random_inputs(jax.random.PRNGKey(2), batch, length, dim, n)

    def shapes(**layout):
        fn = lambda *a: jnp.sum(selective_scan_pallas(*a, delta_softplus=True, interpret=True,
                                                      variant="hybrid", **layout))
        return set(_array_shapes(jax.make_jaxpr(jax.grad(fn, argnums=(3, 4)))(*args).jaxpr))
    lay = choose_layout(length, dim, n, 1, "gpu", True, variant="hybrid")
    blocks = dim // (lay.bwd_block_d or lay.block_d)
    partials = (batch, blocks, n, length)
    assert blocks > 1 and partials in shapes()
    atomic = shapes(bc_atomic=True)
    assert partials not in atomic and (batch, 1, n, length) in atomic
    with pytest.raises(ValueError, match="bc_atomic"):
        choose_layout(length, dim, n, 1, "gpu", True, variant="lanes", bc_atomic=True)


@pytest.mark.parametrize("variant,n", [("hybrid", 16), ("tiles", 64)])
def test_states_every_n_over_t_chunks_keep_one_float_a_step_and_channel(variant, n):
    """With m = N / T the forward keeps (batch, L / N, N, D) states, one float a (t, d)
    whatever N, where m = 1 keeps (batch, L / T, N, D) (the default is m = N / T where
    hybrid's backward programs are one warp, else m = 1); the backward's chunk-start
    buffer (batch, D / bd, m, N, bd) does not grow with L. At N 16 nothing in the gradient
    is larger than batch x L x D. (The tiles backward's dB, dC partials, (batch, D / bd, N,
    L), are the other term that grows with N: 4 L D at N 64, bd 16.)"""
    batch, length, dim = 1, 512, 64               # D >= N: B, C (batch, L, N) stay smaller
    args = random_inputs(jax.random.PRNGKey(1), batch, length, dim, n)
    chunk = choose_layout(length, dim, n, 1, "gpu", True, variant=variant).chunk

    def shapes(**layout):
        fn = lambda *a: jnp.sum(selective_scan_pallas(*a, delta_softplus=True, interpret=True,
                                                      variant=variant, **layout))
        return set(_array_shapes(jax.make_jaxpr(jax.grad(fn, argnums=(0, 1, 2, 3, 4)))(
            *args).jaxpr))
    sparse, dense = shapes(state_every=n // chunk), shapes(state_every=1)
    every_k, every_t = (batch, length // n, n, dim), (batch, length // chunk, n, dim)
    assert every_k in sparse and every_t not in sparse
    assert every_t in dense
    assert shapes() == dense        # two-warp backward programs (this size): m = 1 by default
    if variant == "hybrid":         # one-warp backward programs: m = N / T by default
        assert shapes(bwd_block_d=16, bwd_num_warps=1) == shapes(
            state_every=n // chunk, bwd_block_d=16, bwd_num_warps=1)
    if n == 16:
        assert max(math.prod(s) for s in sparse) <= batch * length * dim


@pytest.mark.parametrize("platform,extra", [("gpu", dict(variant="lanes", state_every=2)),
                                            ("tpu", dict(state_every=2)),
                                            ("gpu", dict(state_every=0))])
def test_state_every_refused_where_no_backward_recomputes(platform, extra):
    with pytest.raises(ValueError, match="state_every"):
        choose_layout(64, 32, 16, 1, platform, True, **extra)


def test_state_every_default_follows_the_backward_layout():
    """hybrid saves its state every N_pad steps where the backward runs one-warp programs
    (batch 8: the training step +1-5%, memory -32%), every chunk where it runs two-warp
    programs (batch 1: the recomputed starts cost the backward +40%, run 51)."""
    wide = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=8)
    assert (wide.bwd_num_warps, wide.state_every) == (1, 16 // wide.chunk)
    for batch in (1, 4):
        lay = choose_layout(4096, 1536, 16, 1, "gpu", False, batch=batch)
        assert (lay.bwd_num_warps, lay.state_every) == (2, 1)
    assert choose_layout(4096, 1536, 64, 1, "gpu", False, batch=8).state_every == 1   # 4 warps
    assert choose_layout(4096, 1536, 16, 1, "gpu", False, batch=1, state_every=4).state_every == 4


def test_tiles_chunk_follows_n_and_the_input_width():
    """The tiles chunk T: 4, but 2 at N_pad 128 and at N_pad 32 with float32 inputs (where
    T 4 spilled and ran slower, run 53); selective_scan_pallas passes the inputs' width on:
    the states the forward saves for the backward are (batch, L / T, N, D)."""
    def chunk(n, **kw):
        return choose_layout(4096, 1536, n, 1, "gpu", False, batch=8, **kw).chunk
    assert (chunk(32), chunk(32, wide_inputs=True), chunk(64, wide_inputs=True)) == (4, 2, 4)
    assert chunk(128) == chunk(128, wide_inputs=True) == 2
    batch, length, dim, n = 1, 32, 16, 32

    def saved_states(dtype):
        args = random_inputs(jax.random.PRNGKey(0), batch, length, dim, n, dtype=dtype)
        fn = lambda *a: jnp.sum(selective_scan_pallas(*a, delta_softplus=True, platform="gpu",
                                                      interpret=True).astype(jnp.float32))
        shapes = set(_array_shapes(jax.make_jaxpr(jax.grad(fn))(*args).jaxpr))
        return [T for T in (2, 4) if (batch, length // T, n, dim) in shapes]
    assert saved_states(jnp.float32) == [2] and saved_states(jnp.bfloat16) == [4]


def test_state_every_rounds_the_time_block():
    lay = choose_layout(100, 32, 16, 1, "gpu", True, state_every=4, segments=1, bwd_segments=1)
    assert lay.state_every == 4 and lay.time_block % (lay.chunk * 4) == 0


def test_bad_inputs_name_the_argument():
    u, delta, A, B, C, D, z, bias = random_inputs(jax.random.PRNGKey(0), 1, 5, 4, 2)
    with pytest.raises(ValueError, match="delta"):
        selective_scan_pallas(u, delta[:, :3], A, B, C)
    with pytest.raises(ValueError, match="A must have shape"):
        selective_scan_pallas(u, delta, A.T, B, C)
    with pytest.raises(ValueError, match="C must have shape"):
        selective_scan_pallas(u, delta, A, B, C[:, :, None, :].repeat(3, axis=2))
    with pytest.raises(TypeError, match="u must be float"):
        selective_scan_pallas(u.astype(jnp.int32), delta, A, B, C)
    with pytest.raises(ValueError, match="platform"):
        selective_scan_pallas(u, delta, A, B, C, platform="cpu")


def test_ops_dispatches_to_pallas():
    from ssm_jax.ops import selective_scan
    args = random_inputs(jax.random.PRNGKey(3), 1, 6, 4, 2, with_z=False)  # softplus below
    out = selective_scan(*args, delta_softplus=True, backend="pallas")
    ref = selective_scan_ref(*args, delta_softplus=True)
    assert rel_err(out, ref) < 1e-5
    with pytest.raises(TypeError, match="not_an_option"):
        selective_scan(*args, backend="pallas", pallas_options={"not_an_option": 1})


def test_mamba_layer_passes_pallas_options():
    """The Mamba layer hands pallas_options to the fused kernel: state_every = 2 trains to
    the same gradients as the xla backend, and a wrong option reaches the kernel's check."""
    from flax import nnx
    from ssm_jax.layers.selective import Mamba
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 21, 8))

    def grads(**kw):
        layer = Mamba(8, d_state=4, rngs=nnx.Rngs(3), **kw)
        graphdef, params = nnx.split(layer)
        loss = lambda p: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x)))
        return jax.jit(jax.grad(loss))(params)     # one compile, not op by op
    fused = grads(backend="pallas", pallas_options={"state_every": 2, "variant": "hybrid"})
    ref = grads(backend="xla")
    for g, r in zip(jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(ref)):
        assert rel_err(g, r) < 1e-4
    with pytest.raises(ValueError, match="state_every"):
        Mamba(8, d_state=4, backend="pallas", pallas_options={"state_every": 2, "variant": "lanes"},
              rngs=nnx.Rngs(3))(x)


GPU_CASES = [
    # (batch, L, D, N, groups, dtype, optional inputs + softplus + last state)
    pytest.param(2, 1000, 200, 16, None, jnp.float32, True, id="f32-all"),
    pytest.param(3, 257, 96, 16, 4, jnp.bfloat16, True, id="bf16-grouped-Lprime-all"),
    pytest.param(1, 61, 48, 64, None, jnp.float32, False, id="f32-N64-plain"),
    pytest.param(1, 61, 48, 32, None, jnp.float32, False, id="f32-N32-plain"),   # tiles T 2
    pytest.param(2, 1, 24, 7, None, jnp.float32, False, id="L1-N7-plain"),
]


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
@pytest.mark.parametrize("variant", ["v2", "tiles", "lanes", "hybrid"])
@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,everything", GPU_CASES)
def test_matches_reference_compiled_gpu(batch, length, dim, n, groups, dtype, everything,
                                        variant):
    args = random_inputs(jax.random.PRNGKey(length + n), batch, length, dim, n, groups, dtype,
                         *(everything,) * 3, for_softplus=everything)
    kwargs = dict(delta_softplus=everything, return_last_state=everything)
    f32 = dtype == jnp.float32
    check_against_reference(args, kwargs, dict(interpret=False, variant=variant),
                            tol=1e-4 if f32 else 1e-2, grad_tol=1e-3 if f32 else 3e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
@pytest.mark.parametrize("n,layout", [
    pytest.param(32, dict(bwd_segments=3), id="N32-bwdseg3"),
    pytest.param(64, dict(bwd_segments=3), id="N64-bwdseg3"),
    pytest.param(64, dict(split=16, segments=1, unroll=8, bwd_segments=3),
                 id="N64-bwdseg3-U8"),
    pytest.param(128, dict(), id="N128-groups4"),
    pytest.param(256, dict(), id="N256-groups8"),
    pytest.param(128, dict(state_groups=2), id="N128-groups2"),
    pytest.param(128, dict(state_groups=1), id="N128-tiles-residual"),
    pytest.param(256, dict(state_groups=1), id="N256-bc-atomic"),
    pytest.param(32, dict(bwd_block_d=8, bwd_num_warps=1, state_every=1), id="N32-bwd-w1-bd8"),
    pytest.param(128, dict(bwd_block_d=4, bwd_num_warps=1, state_every=1, state_groups=1),
                 id="N128-bwd-w1-bd4"),
    pytest.param(256, dict(bwd_block_d=2, bwd_num_warps=1, state_every=1, state_groups=1),
                 id="N256-bwd-w1-bd2"),
    pytest.param(32, dict(state_every=2, bwd_segments=1), id="N32-m2"),
    pytest.param(64, dict(state_every=4, bwd_segments=1), id="N64-m4"),
    pytest.param(64, dict(state_every=8, bwd_segments=3), id="N64-m8-bwdseg3"),
    pytest.param(128, dict(state_every=4), id="N128-m4"),
    pytest.param(128, dict(state_groups=2, serial_groups=True), id="N128-groups2-serial"),
    pytest.param(128, dict(serial_groups=True), id="N128-groups8-serial"),
    pytest.param(256, dict(serial_groups=True), id="N256-groups16-serial"),
    # the other backward kernels adding into the serial groups' sums (kernel.store_row)
    pytest.param(64, dict(serial_groups=True, variant="lanes"), id="N64-serial-lanes"),
    pytest.param(64, dict(serial_groups=True, variant="v2"), id="N64-serial-v2"),
    pytest.param(64, dict(serial_groups=True, variant="tiles"), id="N64-serial-tiles"),
    pytest.param(64, dict(state_groups=2), id="N64-groups2")])
def test_above_16_states_compiled_gpu(n, layout):
    """The default layout above N = 16 compiled (above N 64 as groups of 32 states side by
    side; of 16 or 64 one after another, serial_groups; in one group, state_groups=1, the
    gradient's forward is the tiles forward at N 128 and dB, dC are added by atomics at N
    256), hybrid's segmented backward there (its first pass holds N states a lane; the
    default at batch 1 up to N 64), and
    the tiles backward in one-warp programs of 8 / 4 / 2 channels (opt-in, NOTES.md v33),
    and the 4-warp tiles backward with the state saved every m chunks (the chunk starts of
    a block recomputed before it is walked): values and gradients."""
    args = random_inputs(jax.random.PRNGKey(n), 2, 600, 64, n, None, jnp.float32,
                         True, True, True, for_softplus=True)
    check_against_reference(args, dict(delta_softplus=True, return_last_state=True),
                            dict(interpret=False, **layout), tol=1e-4, grad_tol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
@pytest.mark.parametrize("layout", [
    pytest.param(dict(segments=2), id="seg2"), pytest.param(dict(segments=5), id="seg5"),
    pytest.param(dict(bwd_segments=3), id="bwdseg3"),
    pytest.param(dict(prefetch_bc=False), id="bcatstep"),
    pytest.param(dict(split=2, segments=1), id="split2"),
    pytest.param(dict(split=4, segments=3), id="split4-seg3"),
    pytest.param(dict(split=4, segments=1, unroll=8), id="split4-u8"),
    pytest.param(dict(split=4, segments=1, unroll=8, delta_tile=True), id="split4-u8-deltatile"),
    pytest.param(dict(split=4, segments=3, delta_tile=True), id="split4-seg3-deltatile"),
    pytest.param(dict(split=2, segments=1, delta_tile=True), id="split2-deltatile"),
    pytest.param(dict(row_ahead=2), id="rows2"),
    pytest.param(dict(bwd_block_d=16, bwd_num_warps=1), id="bwd-w1-deltatile"),
    pytest.param(dict(bwd_block_d=16, bwd_num_warps=1, bwd_segments=3), id="bwd-w1-seg3"),
    pytest.param(dict(split=4, segments=1, unroll=8, delta_tile=True, bwd_block_d=16,
                      bwd_num_warps=1, bwd_segments=3, state_every=4), id="states-every4-w1"),
    pytest.param(dict(bwd_segments=2, state_every=2), id="states-every2"),
    pytest.param(dict(bc_atomic=True), id="bc-atomic"),
    pytest.param(dict(bc_atomic=True, bwd_block_d=16, bwd_num_warps=1, bwd_segments=3),
                 id="bc-atomic-w1-seg3")])
@pytest.mark.parametrize("batch,length,dim,n,groups,dtype,everything", GPU_CASES[:2])
def test_segmented_layouts_compiled_gpu(batch, length, dim, n, groups, dtype, everything,
                                         layout):
    """The segmented forward and backward (hybrid) compiled, B, C loaded at their step, a
    channel's states on 2 or 4 lanes (delta on tiles of 2 or 4 steps, handed to the lanes by
    a warp shuffle), u, delta loaded 2 iterations ahead, the states saved every 2 or 4
    chunks (the backward's buffer behind barriers), dB and dC added atomically into one sum a
    group: values, last state and gradients."""
    args = random_inputs(jax.random.PRNGKey(length + n), batch, length, dim, n, groups, dtype,
                         *(everything,) * 3, for_softplus=everything)
    kwargs = dict(delta_softplus=everything, return_last_state=everything)
    f32 = dtype == jnp.float32
    check_against_reference(args, kwargs, dict(interpret=False, **layout),
                            tol=1e-4 if f32 else 1e-2, grad_tol=1e-3 if f32 else 3e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu, reason="needs a GPU: compiled kernels")
def test_kernel_fma_and_exp2_fast_math_compiled_gpu():
    """The inline-PTX fma.rn.f32 (with a broadcast scalar, as B_t[k] is) and
    ex2.approx.ftz.f32 inside a kernel, against float64."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton
    from pallas_kernels.selective_scan.kernel import _exp2, _fma
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    a, b = (jax.random.normal(k, (1 << 15,), jnp.float32) for k in keys[:2])
    x = jax.random.uniform(keys[2], (1 << 15,), jnp.float32, -60.0, 20.0)

    def kernel(a_ref, b_ref, x_ref, s_ref, fma_ref, exp_ref):
        fma_ref[...] = _fma(a_ref[...], s_ref[0], b_ref[...], True)
        exp_ref[...] = _exp2(x_ref[...], True)
    spec = pl.BlockSpec((1024,), lambda i: (i,))
    scalar = jnp.array([1.7], jnp.float32)
    got_fma, got_exp = pl.pallas_call(
        kernel, out_shape=[jax.ShapeDtypeStruct(a.shape, jnp.float32)] * 2,
        grid=(a.size // 1024,), in_specs=[spec] * 3 + [pl.BlockSpec((1,), lambda i: (0,))],
        out_specs=[spec, spec], compiler_params=pltriton.CompilerParams(num_warps=1))(
            a, b, x, scalar)
    a64, b64, x64 = (np.asarray(v, np.float64) for v in (a, b, x))
    np.testing.assert_allclose(np.asarray(got_fma), a64 * 1.7 + b64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_exp), np.exp2(x64), rtol=5e-6, atol=0)
