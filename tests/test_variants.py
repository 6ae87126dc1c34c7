"""The variant mechanism: new diagonal and selective SSMs written in a few lines work in both
modes (against plain loops, values and gradients); malformed variants fail at construction,
naming the piece; the registry."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm_jax.discretize import bilinear_diag, zoh_diag
from ssm_jax.layers import (
    DiagonalLayer, DiagonalSSM, SelectiveLayer, SelectiveSSM, SSMParam, VariantError, available, get, make_layer,
    mamba_ssm, register, s4d_ssm)
from ssm_jax.layers.variants import zoh_selective


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """float32 matmuls in full precision (GPUs default to TF32), so the modes agree to ~1e-5."""
    with jax.default_matmul_precision("highest"):
        yield


def assert_close(a, b, rtol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(b)), 1e-6)
    np.testing.assert_allclose(a / scale, b / scale, atol=rtol, rtol=0)


def run_steps(layer, x):
    _, ys = jax.lax.scan(layer.step, layer.init_state(x.shape[0]), jnp.moveaxis(x, 1, 0))
    return jnp.moveaxis(ys, 0, 1)


def both_modes(layer, x):
    return jax.jit(lambda x: (layer(x), run_steps(layer, x)))(x)


# ---------------------------------------------------------------------------- a user's variants

def real_init(key, H, N):
    """A real diagonal SSM: A_n = -(n + 1), B = 1, C ~ N(0, 1), dt in [0.01, 0.1]."""
    k_C, k_dt = jax.random.split(key)
    return {"log_neg_A": jnp.log(jnp.broadcast_to(jnp.arange(1.0, N + 1), (H, N))),
            "B": jnp.ones((H, N)), "C": jax.random.normal(k_C, (H, N)),
            "log_dt": jnp.log(jax.random.uniform(k_dt, (H,), minval=0.01, maxval=0.1))}


REAL_BILINEAR = DiagonalSSM(init=real_init, A=lambda p: -jnp.exp(p["log_neg_A"]),
                            discretize=bilinear_diag, conj_pairs=False, A_keys=("log_neg_A",))


def euler_discretize(delta, A, B, u):
    """Forward Euler for the selective SSM: A_bar = 1 + delta A, Bu_bar = delta B u."""
    return 1 + delta[..., None] * A, (delta * u)[..., None] * B[:, :, None, :]


def gated_init(key, D, N):
    k1, k2 = jax.random.split(key)
    return {"A_log": jnp.zeros((D, N)), "W_B": 0.5 * jax.random.normal(k1, (D, N)),
            "W_C": 0.5 * jax.random.normal(k2, (D, N)), "delta_bias": jnp.full((D,), -2.0)}


def gated_select(p, u):
    """A new rule for delta: the channel's own input, through the library's softplus."""
    return u, u @ p["W_B"], u @ p["W_C"]


GATED_EULER = SelectiveSSM(init=gated_init, A=lambda p: -jnp.exp(p["A_log"]), select=gated_select,
                           discretize=euler_discretize, delta_softplus=True, A_keys=("A_log",),
                           weight_keys=("W_B", "W_C"))


def diagonal_loop(layer, u):
    """Plain numpy loop of the diagonal recurrence from the variant's continuous pieces."""
    p = {k: np.asarray(v[...], np.float64) for k, v in layer.ssm.items()}
    A, dt = -np.exp(p["log_neg_A"]), np.exp(p["log_dt"])[:, None]
    A_bar, B_bar = (1 + dt / 2 * A) / (1 - dt / 2 * A), dt * p["B"] / (1 - dt / 2 * A)
    x, ys = np.zeros(u.shape[:1] + A.shape), []
    for t in range(u.shape[1]):
        x = A_bar * x + B_bar * u[:, t, :, None]
        ys.append(np.sum(p["C"] * x, -1) + np.asarray(layer.D[...]) * u[:, t])
    return np.stack(ys, 1)


@pytest.mark.parametrize("batch,L,H,N", [(2, 9, 3, 4), (1, 5, 2, 7)])
def test_user_diagonal_variant_both_modes(batch, L, H, N):
    register("test_real_bilinear", REAL_BILINEAR, overwrite=True)
    layer = make_layer("test_real_bilinear", H, d_state=N, rngs=nnx.Rngs(0))
    u = jax.random.normal(jax.random.PRNGKey(1), (batch, L, H))
    y, y_step = both_modes(layer, u)
    assert_close(y, diagonal_loop(layer, np.asarray(u, np.float64)))
    assert_close(y_step, y)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(u) ** 2)))(layer)
    assert set(grads["ssm"]) == {"log_neg_A", "B", "C", "log_dt"}
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_replacing_one_piece_of_s4d():
    zoh = s4d_ssm("lin")
    layer = DiagonalLayer(zoh, 3, d_state=4, rngs=nnx.Rngs(0))
    other = DiagonalLayer(dataclasses.replace(zoh, discretize=bilinear_diag), 3, d_state=4, rngs=nnx.Rngs(0))
    u = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 3))
    y, y_step = both_modes(other, u)
    assert_close(y_step, y)
    assert not np.allclose(y, jax.jit(lambda u: layer(u))(u))      # the discretization mattered


def selective_loop(layer, x, z):
    """The inner selective SSM of the block as a numpy loop (Euler rule, softplus delta)."""
    p = {k: np.asarray(v[...], np.float64) for k, v in layer.ssm.items()}
    A = -np.exp(p["A_log"])
    h, ys = np.zeros(x.shape[:1] + A.shape), []
    for t in range(x.shape[1]):
        u = x[:, t]
        delta = np.log1p(np.exp(u + p["delta_bias"]))
        h = (1 + delta[..., None] * A) * h + (delta * u)[..., None] * (u @ p["W_B"])[:, None, :]
        y = np.sum(h * (u @ p["W_C"])[:, None, :], -1) + np.asarray(layer.D[...]) * u
        ys.append(y * z[:, t] / (1 + np.exp(-z[:, t])))
    return np.stack(ys, 1)


@pytest.mark.parametrize("batch,L,d_model,N", [(2, 7, 3, 4), (1, 4, 2, 3)])
def test_user_selective_variant_both_modes(batch, L, d_model, N):
    register("test_gated_euler", GATED_EULER, overwrite=True)
    layer = make_layer("test_gated_euler", d_model, d_state=N, d_conv=2, rngs=nnx.Rngs(0))
    u = jax.random.normal(jax.random.PRNGKey(1), (batch, L, d_model))
    y, y_step = both_modes(layer, u)
    assert_close(y_step, y)
    x = jax.random.normal(jax.random.PRNGKey(2), (batch, L, layer.d_inner))
    z = jax.random.normal(jax.random.PRNGKey(3), (batch, L, layer.d_inner))
    inner = jax.jit(lambda x, z: layer._scan({k: v[...] for k, v in layer.ssm.items()}, x, z))(x, z)
    assert_close(inner, selective_loop(layer, np.asarray(x, np.float64), np.asarray(z, np.float64)))
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(u) ** 2)))(layer)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    kinds = {k: type(v) for k, v in layer.ssm.items()}
    assert kinds == {"A_log": SSMParam, "W_B": nnx.Param, "W_C": nnx.Param, "delta_bias": SSMParam}


def test_zoh_route_equals_generic_scan_route():
    """'zoh' goes to ops.selective_scan; the same rule as a callable goes to linear_scan."""
    fused = SelectiveLayer(mamba_ssm(2), 4, d_state=3, backend="xla", rngs=nnx.Rngs(5))
    generic = SelectiveLayer(dataclasses.replace(mamba_ssm(2), discretize=zoh_selective), 4, d_state=3,
                             rngs=nnx.Rngs(5))
    u = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4))
    assert_close(jax.jit(lambda u: generic(u))(u), jax.jit(lambda u: fused(u))(u))
    g_fused = nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(u)))))(fused)
    g_generic = nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(u)))))(generic)
    for a, b in zip(jax.tree.leaves(g_generic), jax.tree.leaves(g_fused)):
        assert_close(a, b)


@pytest.mark.parametrize("init,L", [("inv", 7), ("legs", 12)])
def test_zoh_kernel_route_equals_generic_vandermonde(init, L):
    """ZOH diagonal variants use kernel_s4d (exp(k dt A)); any other rule kernel_diag."""
    zoh = s4d_ssm(init)
    fast = DiagonalLayer(zoh, 3, d_state=6, rngs=nnx.Rngs(2))
    generic = DiagonalLayer(dataclasses.replace(zoh, discretize=lambda A, B, dt: zoh_diag(A, B, dt)),
                            3, d_state=6, rngs=nnx.Rngs(2))
    u = jax.random.normal(jax.random.PRNGKey(1), (2, L, 3))
    assert_close(jax.jit(lambda u: fast(u))(u), jax.jit(lambda u: generic(u))(u))
    grads = [nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(u)))))(m) for m in (fast, generic)]
    for a, b in zip(*map(jax.tree.leaves, grads)):
        assert_close(a, b)


# ---------------------------------------------------------------------------- malformed variants

def _wrong(**pieces):
    return dataclasses.replace(REAL_BILINEAR, **pieces)


@pytest.mark.parametrize("variant,message", [
    (lambda: _wrong(A=lambda p: jnp.zeros((3, 5))), r"DiagonalSSM.A must return \(H, M\) = \(3, 4\), got \(3, 5\)"),
    (lambda: _wrong(C=lambda p: p["C"][0]), r"DiagonalSSM.C must return \(H, M\)"),
    (lambda: _wrong(dt=lambda p: p["log_dt"][:, None]), r"DiagonalSSM.dt must return \(H,\) = \(3,\)"),
    (lambda: _wrong(discretize=lambda A, B, dt: A), r"DiagonalSSM.discretize must return a pair"),
    (lambda: _wrong(init=lambda key, H, N: [jnp.zeros(3)]), r"DiagonalSSM.init must return a non-empty dict"),
    (lambda: _wrong(B=lambda p: p["missing"]), r"DiagonalSSM.B failed .*KeyError"),
    (lambda: _wrong(A_keys=("nope",)), r"DiagonalSSM.A_keys names 'nope'"),
    (lambda: _wrong(A=lambda p: jnp.zeros((3, 4), jnp.int32)), r"DiagonalSSM.A must return a float or complex"),
])
def test_malformed_diagonal_variant_named_at_construction(variant, message):
    with pytest.raises(VariantError, match=message):
        register("test_bad", variant(), overwrite=True)
        make_layer("test_bad", 3, d_state=4, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("pieces,message", [
    (dict(select=lambda p, u: (u, u)), r"SelectiveSSM.select must return a triple"),
    (dict(select=lambda p, u: (u, u, u @ p["W_C"])), r"SelectiveSSM.select -> B must return \(b, L, N\)"),
    (dict(A=lambda p: p["A_log"][0]), r"SelectiveSSM.A must return \(D, N\)"),
    (dict(discretize=lambda d, A, B, u: (A, B)), r"SelectiveSSM.discretize -> A_bar must return \(b, L, D, N\)"),
    (dict(weight_keys=("W_X",)), r"SelectiveSSM.weight_keys names 'W_X'"),
])
def test_malformed_selective_variant_named_at_construction(pieces, message):
    with pytest.raises(VariantError, match=message):
        SelectiveLayer(dataclasses.replace(GATED_EULER, **pieces), 3, d_state=4, rngs=nnx.Rngs(0))


def test_non_callable_pieces_fail_when_defined():
    with pytest.raises(VariantError, match="DiagonalSSM.A must be callable"):
        DiagonalSSM(init=real_init, A=-1.0)
    with pytest.raises(VariantError, match="SelectiveSSM.select must be callable"):
        SelectiveSSM(init=gated_init, A=lambda p: p["A_log"], select="nope")
    with pytest.raises(VariantError, match="SelectiveSSM.discretize must be 'zoh' or a callable"):
        SelectiveSSM(init=gated_init, A=lambda p: p["A_log"], select=gated_select, discretize="bilinear")


def test_shapes_checked_before_anything_runs():
    """The check only traces abstractly: init never sees a concrete key when a piece is bad."""
    concrete_calls = []

    def init(key, H, N):
        try:
            concrete_calls.append(np.asarray(key))
        except jax.errors.TracerArrayConversionError:
            pass
        return real_init(key, H, N)

    bad = _wrong(init=init, C=lambda p: p["C"].T)
    register("test_bad", bad, overwrite=True)
    with pytest.raises(VariantError, match="DiagonalSSM.C"):
        make_layer("test_bad", 3, d_state=4, rngs=nnx.Rngs(0))
    assert concrete_calls == []


# ---------------------------------------------------------------------------- registry

def test_registry():
    assert {"s4", "s4d", "mamba", "dense"} <= set(available())
    with pytest.raises(ValueError, match="already registered"):
        register("s4d", REAL_BILINEAR)
    with pytest.raises(TypeError, match="register expects"):
        register("test_number", 3)
    with pytest.raises(KeyError, match="available"):
        get("no_such_layer")

    def factory(d_model, *, rngs, **kwargs):
        return make_layer("s4d", d_model, rngs=rngs, **kwargs)

    assert register("test_factory", factory, overwrite=True) is factory
    register("test_factory", factory)                                   # the same object again: fine
    assert "test_factory" in available()
    layer = make_layer("test_factory", 3, d_state=4, init="lin", rngs=nnx.Rngs(0))
    assert layer(jnp.ones((1, 5, 3))).shape == (1, 5, 3)
