"""Layers: whole-sequence mode == recurrent step mode (values and gradients), Mamba against a
plain-loop reference of the whole block, jit/vmap/grad, frozen A, parameter kinds, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm_jax.layers import (
    S4, S4D, DenseSSM, FrozenSSMVariable, Mamba, SSMParam, available, make_layer)


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """float32 matmuls in full precision (GPUs default to TF32), so the modes agree to ~1e-5."""
    with jax.default_matmul_precision("highest"):
        yield


# (name, constructor kwargs); every registered layer appears at least once.
CASES = [
    ("s4d", dict(init="inv")),
    ("s4d", dict(init="legs")),
    ("s4d", dict(init="random_real")),
    ("s4", dict(init="legs", l_max=7)),
    ("s4", dict(init="fout", n_ssm=1)),
    ("dense", dict(init="legs")),
    ("dense", dict(init="random", discretization="zoh")),
    ("mamba", dict(d_conv=3, backend="xla")),
]
SHAPES = [(2, 7, 4, 4), (1, 5, 3, 6)]          # (batch, L, d_model, d_state)


def run_steps(layer, x):
    """The step mode over a whole sequence: (batch, L, H) -> (batch, L, H)."""
    def body(state, x_t):
        return layer.step(state, x_t)

    _, ys = jax.lax.scan(body, layer.init_state(x.shape[0]), jnp.moveaxis(x, 1, 0))
    return jnp.moveaxis(ys, 0, 1)


def build(name, kwargs, d_model, d_state, seed=0):
    kwargs = dict(kwargs)
    if name == "s4":
        kwargs["l_max"] = None
    return make_layer(name, d_model, d_state=d_state, rngs=nnx.Rngs(seed), **kwargs)


def assert_close(a, b, rtol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(b)), 1e-6)
    np.testing.assert_allclose(a / scale, b / scale, atol=rtol, rtol=0)


def test_every_registered_layer_is_tested():
    assert {"s4", "s4d", "mamba", "dense"} <= set(available())
    assert {name for name, _ in CASES} >= {"s4", "s4d", "mamba", "dense"}


@pytest.mark.parametrize("name,kwargs", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_sequence_mode_equals_step_mode(name, kwargs, shape):
    batch, L, H, N = shape
    kwargs = dict(kwargs, l_max=L) if name == "s4" else kwargs
    layer = make_layer(name, H, d_state=N, rngs=nnx.Rngs(L), **kwargs)
    x = jax.random.normal(jax.random.PRNGKey(H), (batch, L, H))
    y = jax.jit(lambda x: layer(x))(x)
    assert y.shape == (batch, L, H) and y.dtype == jnp.float32
    assert_close(jax.jit(lambda x: run_steps(layer, x))(x), y)


@pytest.mark.parametrize("name,kwargs", [CASES[0], CASES[3], CASES[5], CASES[7]])
def test_gradients_agree_between_modes(name, kwargs):
    batch, L, H, N = 2, 6, 3, 4
    if name == "s4":  # step's C = C~ (I - A_bar^L)^-1 is ill-conditioned in dt when dt L << 1 (float32)
        kwargs = dict(kwargs, l_max=L, dt_min=1e-2)
    layer = make_layer(name, H, d_state=N, rngs=nnx.Rngs(1), **kwargs)
    x = jax.random.normal(jax.random.PRNGKey(2), (batch, L, H))
    w = jax.random.normal(jax.random.PRNGKey(3), (batch, L, H))
    g_seq = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x) * w)))(layer)
    g_step = nnx.jit(nnx.grad(lambda m: jnp.sum(run_steps(m, x) * w)))(layer)
    leaves_seq, leaves_step = jax.tree.leaves(g_seq), jax.tree.leaves(g_step)
    assert len(leaves_seq) == len(leaves_step) > 0
    for a, b in zip(leaves_seq, leaves_step):
        assert np.all(np.isfinite(a))
        assert_close(a, b, rtol=1e-3 if name == "s4" else 1e-4)


def test_n_ssm_ties_A_and_B_across_channels():
    tied, free = (S4(6, d_state=4, n_ssm=n, rngs=nnx.Rngs(0)) for n in (2, None))
    assert tied.B.shape == (2, 2, 2) and tied.P.shape == (1, 2, 2, 2) and free.B.shape == (6, 2, 2)
    Lambda, P, B, _ = tied.continuous()
    assert Lambda.shape == B.shape == (6, 2) and P.shape == (1, 6, 2)
    np.testing.assert_array_equal(B[:3], jnp.broadcast_to(B[0], (3, 2)))        # channels 0-2 share copy 0
    s4d = S4D(6, d_state=4, rngs=nnx.Rngs(0))                                    # default n_ssm=1
    assert s4d.ssm["log_A_real"].shape == (1, 2) and s4d.ssm["B"].shape == (1, 2, 2)
    assert s4d.ssm["C"].shape == (6, 2, 2) and s4d.continuous()[0].shape == (6, 2)
    for layer in (S4, S4D):
        with pytest.raises(ValueError, match="n_ssm must be"):
            layer(6, d_state=4, n_ssm=4, rngs=nnx.Rngs(0))


def test_s4_shorter_input_truncates_the_l_max_kernel():
    layer = S4(3, d_state=4, l_max=9, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 3))
    assert_close(jax.jit(lambda x: layer(x[:, :5]))(x), jax.jit(lambda x: layer(x)[:, :5])(x))  # causal prefix
    with pytest.raises(ValueError, match="l_max"):
        layer(jnp.zeros((1, 10, 3)))
    with pytest.raises(ValueError, match="l_max"):
        S4(3, d_state=4, rngs=nnx.Rngs(0)).step(jnp.zeros((1, 3, 4), jnp.complex64), jnp.zeros((1, 3)))


# ---------------------------------------------------------------------------- Mamba reference


def mamba_block_loop(layer, u):
    """The whole Mamba block as a plain float64 numpy loop over time (no JAX ops)."""
    p = {k: np.asarray(v[...], np.float64) for k, v in layer.ssm.items()}
    W_in = np.asarray(layer.in_proj.kernel[...], np.float64)
    W_out = np.asarray(layer.out_proj.kernel[...], np.float64)
    conv_w = np.asarray(layer.conv_weight[...], np.float64)
    conv_b = np.asarray(layer.conv_bias[...], np.float64)
    D = np.asarray(layer.D[...], np.float64)
    A = -np.exp(p["A_log"])
    u = np.asarray(u, np.float64)
    batch, L, _ = u.shape
    K, d_inner, N = conv_w.shape[0], layer.d_inner, layer.d_state
    R = p["dt_proj"].shape[0]
    out = np.zeros((batch, L, layer.d_model))
    for b in range(batch):
        xz = u[b] @ W_in
        x_in, z = xz[:, :d_inner], xz[:, d_inner:]
        h = np.zeros((d_inner, N))
        for t in range(L):
            conv = conv_b.copy()
            for k in range(K):
                s = t - (K - 1) + k
                if s >= 0:
                    conv += conv_w[k] * x_in[s]
            x = conv / (1 + np.exp(-conv))                                   # silu
            proj = x @ p["x_proj"]
            dt_in, B, C = proj[:R], proj[R:R + N], proj[R + N:]
            delta = np.log1p(np.exp(dt_in @ p["dt_proj"] + p["delta_bias"]))  # softplus
            h = np.exp(delta[:, None] * A) * h + (delta * x)[:, None] * B[None, :]
            y = h @ C + D * x
            out[b, t] = (y * z[t] / (1 + np.exp(-z[t]))) @ W_out
    return out


@pytest.mark.parametrize("batch,L,d_model,d_state,d_conv,expand", [(2, 6, 4, 3, 4, 2), (1, 9, 3, 5, 2, 1)])
def test_mamba_matches_plain_loop_of_the_block(batch, L, d_model, d_state, d_conv, expand):
    layer = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, backend="xla", rngs=nnx.Rngs(4))
    u = jax.random.normal(jax.random.PRNGKey(5), (batch, L, d_model))
    assert_close(jax.jit(lambda u: layer(u))(u), mamba_block_loop(layer, u))


def test_mamba_init_follows_the_paper():
    dt_min, dt_max = 1e-3, 1e-1
    layer = Mamba(32, d_state=6, dt_min=dt_min, dt_max=dt_max, rngs=nnx.Rngs(0))
    assert layer.ssm["dt_proj"].shape == (2, 64)                       # dt_rank = ceil(32 / 16)
    np.testing.assert_allclose(np.exp(layer.ssm["A_log"][...]), np.tile(np.arange(1, 7), (64, 1)), rtol=1e-6)
    dt = jax.nn.softplus(layer.ssm["delta_bias"][...])                 # inverse softplus of dt
    assert np.all(dt >= dt_min * (1 - 1e-4)) and np.all(dt <= dt_max * (1 + 1e-4))
    np.testing.assert_array_equal(layer.D[...], np.ones(64))


# ---------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("name,kwargs", [CASES[0], CASES[3], CASES[7]])
def test_jit_and_vmap(name, kwargs):
    layer = build(name, kwargs, 3, 4)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
    y = nnx.jit(lambda m, x: m(x))(layer, x)
    # vmap over an extra leading axis: each slice is a (batch, L, H) input
    ys = jax.jit(jax.vmap(lambda x: layer(x)))(jnp.stack([x, 2 * x]))
    assert_close(ys[0], y)
    assert_close(ys[1], jax.jit(lambda x: layer(x))(2 * x))


# ---------------------------------------------------------------------------- parameters


def ssm_param_paths(module, kind=SSMParam):
    return {"/".join(map(str, path)) for path, node in nnx.iter_graph(module) if isinstance(node, kind)}


def test_ssm_params_are_exactly_the_ssm_parameters():
    rngs = nnx.Rngs(0)
    assert ssm_param_paths(S4D(3, d_state=4, rngs=rngs)) == {
        "ssm/log_A_real", "ssm/A_imag", "ssm/B", "ssm/C", "ssm/log_dt", "D"}
    assert ssm_param_paths(S4(3, d_state=4, rngs=rngs)) == {
        "log_A_real", "A_imag", "P", "B", "C", "log_dt", "D"}
    assert ssm_param_paths(DenseSSM(3, d_state=4, rngs=rngs)) == {"A", "B", "C", "log_dt", "D"}
    assert ssm_param_paths(Mamba(3, d_state=4, rngs=rngs)) == {"ssm/A_log", "D"}


@pytest.mark.parametrize("name,frozen", [("s4d", {"ssm/log_A_real", "ssm/A_imag"}),
                                         ("s4", {"log_A_real", "A_imag", "P"}),
                                         ("dense", {"A"}), ("mamba", {"ssm/A_log"})])
def test_frozen_A_is_not_a_param(name, frozen):
    layer = make_layer(name, 3, d_state=4, trainable_A=False, rngs=nnx.Rngs(0))
    assert ssm_param_paths(layer, FrozenSSMVariable) == frozen
    assert not ssm_param_paths(layer, nnx.Param) & frozen
    assert not issubclass(FrozenSSMVariable, nnx.Param)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 4, 3))))))(layer)  # nnx.Param only
    assert not ssm_param_paths(grads, FrozenSSMVariable)


# ---------------------------------------------------------------------------- bidirectional


@pytest.mark.parametrize("name", ["s4d", "s4", "dense"])
def test_bidirectional_shapes_and_no_step(name):
    layer = make_layer(name, 3, d_state=4, bidirectional=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 3))
    y, y_perturbed = jax.jit(lambda x: (layer(x), layer(x.at[:, -1].add(1.0))))(x)
    assert y.shape == (2, 6, 3)
    # the output at t depends on the future: perturbing the last input changes y[:, 0]
    assert not np.allclose(y_perturbed[:, 0], y[:, 0])
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(layer.init_state(2), x[:, 0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["s4d", "s4", "dense", "mamba"])
def test_bad_shapes_and_dtypes_name_the_argument(name):
    layer = build(name, {}, 3, 4)
    with pytest.raises(ValueError, match=r"u must have shape \(batch, L, 3\)"):
        layer(jnp.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="u must have shape"):
        layer(jnp.zeros((5, 3)))
    with pytest.raises(TypeError, match="u must have a floating dtype"):
        layer(jnp.zeros((2, 5, 3), jnp.int32))
    if name == "s4":
        return                                   # l_max=None: step is refused (tested above)
    with pytest.raises(ValueError, match="u_t must have shape"):
        layer.step(layer.init_state(2), jnp.zeros((2, 4)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="init must be one of"):
        S4D(3, init="nope", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="d_state must be even"):
        S4D(3, d_state=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="backend must be one of"):
        Mamba(3, backend="cuda", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dt_min and dt_max"):
        S4(3, d_state=4, dt_min=0.1, dt_max=0.01, rngs=nnx.Rngs(0))
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        make_layer("nope", 3, rngs=nnx.Rngs(0))
