"""The fused selective scan lowers for CUDA (Triton) and TPU (Mosaic) on a CPU-only machine.

``jax.export`` runs the Pallas -> Triton IR and Pallas -> Mosaic lowerings without the
device, so a change that breaks GPU or TPU lowering fails here, forward and backward.
"""
import jax
import jax.numpy as jnp
import pytest

from pallas_kernels.selective_scan import selective_scan_pallas

# The Triton custom call carries no cross-version compatibility guarantee; we only check
# that lowering succeeds, not that the artifact is stable.
TRITON_CALL = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")


def _specs(batch, length, dim, n, groups, dtype, with_optional):
    sd = jax.ShapeDtypeStruct
    bc = (batch, length, n) if groups is None else (batch, length, groups, n)
    seq = sd((batch, length, dim), dtype)
    vec = sd((dim,), jnp.float32) if with_optional else None
    z = seq if with_optional else None
    return [seq, seq, sd((dim, n), jnp.float32), sd(bc, dtype), sd(bc, dtype), vec, z, vec]


def _export(fn, specs, platform):
    present = [i for i, s in enumerate(specs) if s is not None]

    def call(*xs):
        args = [None] * len(specs)
        for i, x in zip(present, xs):
            args[i] = x
        return fn(*args)
    return jax.export.export(jax.jit(call), platforms=[platform],
                             disabled_checks=[TRITON_CALL])(*[specs[i] for i in present])


def _variant_args(variant):
    """"name[-segments][-bcatstep][-bwdsegments][-split4][-rows2][-deltatile]": the variant;
    its forward cut into 4 time segments; loading B, C at their step (prefetch_bc=False); its
    backward cut into 3; a channel's states on 4 lanes; u, delta loaded 2 iterations ahead;
    delta on tiles of 4 steps (its shuffle lowered as inline PTX); the backward in one-warp
    programs of 16 channels (delta on a tile a chunk); the state saved every 4th chunk only
    (the backward recomputing the starts between, behind a barrier); dB, dC summed by
    atomic adds in the kernel (bcatomic)."""
    name, *opts = variant.split("-")
    return dict(variant=name, segments=4 if "segments" in opts else None,
                prefetch_bc=False if "bcatstep" in opts else None,
                bwd_segments=3 if "bwdsegments" in opts else None,
                split=4 if "split4" in opts else None, row_ahead=2 if "rows2" in opts else None,
                delta_tile=True if "deltatile" in opts else None,
                bwd_block_d=16 if "bwdwarp1" in opts else None,
                bwd_num_warps=1 if "bwdwarp1" in opts else None,
                state_every=4 if "stateevery4" in opts else None,
                bc_atomic=True if "bcatomic" in opts else None)


CASES = [
    pytest.param(2, 300, 256, 16, None, jnp.bfloat16, True, id="bf16-all"),
    pytest.param(1, 77, 384, 8, 3, jnp.float32, False, id="f32-grouped-plain"),
]


VARIANTS = [("cuda", "gpu", "v2"), ("tpu", "tpu", "v2"), ("cuda", "gpu", "tiles"),
            ("cuda", "gpu", "lanes"), ("cuda", "gpu", "hybrid"),
            ("cuda", "gpu", "hybrid-segments"), ("cuda", "gpu", "hybrid-segments-bcatstep"),
            ("cuda", "gpu", "hybrid-bwdsegments"), ("cuda", "gpu", "hybrid-split4"),
            ("cuda", "gpu", "hybrid-split4-deltatile"),
            ("cuda", "gpu", "hybrid-segments-split4-deltatile"),
            ("cuda", "gpu", "hybrid-segments-split4-rows2"),
            ("cuda", "gpu", "hybrid-bwdsegments-bwdwarp1"),
            ("cuda", "gpu", "hybrid-bwdsegments-bwdwarp1-stateevery4"),
            ("cuda", "gpu", "tiles-stateevery4"),
            ("cuda", "gpu", "hybrid-bwdsegments-bwdwarp1-bcatomic"),
            ("cuda", "gpu", "tiles-bcatomic")]
# Every variant with the first case (all options, bf16); the second (float32, grouped B, C,
# no options) with the plain variants only: the options' code paths do not depend on the
# dtype or the grouping, and each export takes ~10 s of the CI's CPU.
EXPORTS = [pytest.param(*v, *case.values, id=f"{'-'.join(v)}-{case.id}")
           for i, case in enumerate(CASES) for v in VARIANTS
           if i == 0 or "-" not in v[2]]


@pytest.mark.parametrize("platform,layout,variant,batch,length,dim,n,groups,dtype,"
                         "with_optional", EXPORTS)
def test_exports_forward_and_backward(platform, layout, variant, batch, length, dim, n, groups,
                                      dtype, with_optional):
    _check_exports(platform, _specs(batch, length, dim, n, groups, dtype, with_optional),
                   dict(delta_softplus=with_optional, platform=layout, **_variant_args(variant)))


@pytest.mark.parametrize("batch,n", [(8, 32), (8, 64), (8, 128), (8, 256), (1, 32),
                                     (1, 64), (1, 128)])
def test_exports_hybrid_above_16_states(batch, n):
    """The default layout (hybrid) above N = 16 at the protocol's shape (specs only, nothing
    allocated): the lanes forward with J <= 16 states a lane on N / J lanes (segmented at
    batch 1 where its programs are few), the tiles backward in its own block and chunk
    (segmented at batch 1 up to N 64); batch 1 N 128 as 4 groups of 32 states
    (`state_groups`): the N 32 layouts over 4 copies of the channels; batch 8 from N 64
    as serial groups of 16 (`serial_groups`, chosen where memory would be large)."""
    specs = _specs(batch, 4096, 1536, n, None, jnp.bfloat16, True)
    _check_exports("cuda", specs, dict(delta_softplus=True, platform="gpu"))


@pytest.mark.parametrize("platform,layout", [("cuda", "gpu"), ("tpu", "tpu")])
def test_exports_serial_state_groups(platform, layout):
    """The groups of states one after another (`serial_groups`: the kernels inside a
    ``lax.scan`` over the groups), forward and backward, for both platforms."""
    specs = _specs(2, 256, 256, 64, None, jnp.bfloat16, True)
    _check_exports(platform, specs, dict(delta_softplus=True, platform=layout,
                                         state_groups=4, serial_groups=True))


def _check_exports(platform, specs, kwargs):
    """Export the forward (out, last state) and the gradient of every input for
    ``platform``, the call's ``kwargs``; check the shapes and that kernels were lowered."""
    batch, length, dim = specs[0].shape
    n = specs[2].shape[1]

    def forward(*args):
        return selective_scan_pallas(*args, return_last_state=True, interpret=False, **kwargs)

    def loss(*args):
        out, last = forward(*args)
        return jnp.sum(out.astype(jnp.float32) ** 2) + jnp.sum(last)

    def backward(*args):
        present = tuple(i for i, a in enumerate(args) if a is not None)
        return jax.grad(loss, argnums=present)(*args)

    fwd = _export(forward, specs, platform)
    assert fwd.platforms == (platform,)
    assert fwd.out_avals[0].shape == (batch, length, dim)
    assert fwd.out_avals[1].shape == (batch, dim, n)
    bwd = _export(backward, specs, platform)
    assert [a.shape for a in bwd.out_avals] == [s.shape for s in specs if s is not None]
    text = bwd.mlir_module()
    marker = "xla.gpu.triton" if platform == "cuda" else "tpu_custom_call"
    assert text.count(marker) >= 2        # the forward and the backward kernels
