"""The user examples of docs/custom_ssm.md (``examples/``): each registers a variant that
works in both modes, under jit/grad/vmap, and trains through ``train_and_evaluate`` on the
tiny quickstart; a malformed variant gets the documented error before anything compiles."""
import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import quickstart
from ssm_jax.discretize import bilinear_diag, euler_diag
from ssm_jax.layers import VariantError, available, make_layer, register
from ssm_jax.layers.variants import zoh_selective
from ssm_jax.training import import_module_or_file, read_metrics, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = {  # registered name -> (file, the module attribute holding the variant)
    "geom_diag": (os.path.join(ROOT, "examples", "diagonal_geometric.py"), "GEOM_DIAG"),
    "bounded_delta": (os.path.join(ROOT, "examples", "selective_new_delta.py"), "BOUNDED_DELTA"),
}
DOC = os.path.join(ROOT, "docs", "custom_ssm.md")
X = jax.random.normal(jax.random.PRNGKey(1), (2, 12, 4))


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """float32 matmuls in full precision (GPUs default to TF32), so the modes agree to ~1e-5."""
    with jax.default_matmul_precision("highest"):
        yield


def example(name):
    """The example module registering ``name``, imported by path as ``import_modules`` does."""
    return import_module_or_file(EXAMPLES[name][0])


def variant(name):
    """The variant the example registers as ``name``."""
    return getattr(example(name), EXAMPLES[name][1])


def assert_close(a, b, tol=1e-4):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, atol=tol * max(np.max(np.abs(b)), 1e-6), rtol=0)


def build(name, **kwargs):
    example(name)
    return make_layer(name, 4, d_state=6, rngs=nnx.Rngs(0), **kwargs)


@functools.lru_cache(maxsize=None)
def built(name):
    """(layer, its jitted output on X), shared by the tests (building and eager calls are slow)."""
    layer = build(name)
    return layer, jax.jit(lambda x: layer(x))(X)


def run_steps(layer, x):
    _, ys = jax.lax.scan(layer.step, layer.init_state(x.shape[0]), jnp.moveaxis(x, 1, 0))
    return jnp.moveaxis(ys, 0, 1)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_registered_and_both_modes_agree(name):
    layer, seq = built(name)                             # imports the example, builds by name
    assert name in available() and layer.variant is variant(name)
    assert seq.shape == X.shape and np.all(np.isfinite(seq))
    assert_close(jax.jit(lambda x: run_steps(layer, x))(X), seq)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_jit_grad_vmap(name):
    layer, seq = built(name)
    assert_close(jax.jit(jax.vmap(lambda x: layer(x[None])[0]))(X), seq)     # vmap over the batch
    grads = nnx.jit(nnx.grad(lambda m: jnp.mean(jnp.sin(m(X)))))(layer)
    ssm_grads = {k: np.asarray(v[...]) for k, v in grads.ssm.items()}
    assert set(ssm_grads) == set(layer.ssm)
    for key, g in ssm_grads.items():
        assert np.all(np.isfinite(g)) and np.any(g != 0), key
    frozen = build(name, trainable_A=False)            # trainable_A=False: A_keys are not parameters
    assert all(not isinstance(frozen.ssm[k], nnx.Param) for k in layer.variant.A_keys)
    assert all(isinstance(frozen.ssm[k], nnx.Param) for k in set(layer.ssm) - set(layer.variant.A_keys))


def test_geometric_init_and_theta_method(monkeypatch):
    geo = example("geom_diag")
    A, B, _, dt = built("geom_diag")[0].continuous()
    np.testing.assert_allclose(A.real, -0.5, rtol=1e-6)                    # S4D-Lin's real part
    ratios = A.imag[:, 1:] / A.imag[:, :-1]                                  # geometric frequencies
    np.testing.assert_allclose(ratios, ratios[0, 0], rtol=1e-5)
    assert ratios[0, 0] > 1 and np.all((dt >= geo.DT_MIN) & (dt <= geo.DT_MAX))
    for theta, library_rule in ((0.5, bilinear_diag), (0.0, euler_diag)):   # the family's known members
        monkeypatch.setattr(geo, "THETA", theta)
        for mine, ref in zip(geo.theta_method(A, B, dt), library_rule(A, B, dt)):
            assert_close(mine, ref, 1e-5)
    monkeypatch.setattr(geo, "THETA", 1.0)           # backward Euler: stable at any step size
    A_bar, _ = geo.theta_method(A, B, 100 * dt)
    assert np.all(np.abs(A_bar) < 1)


def test_bounded_delta_rule_and_scan_routes():
    sel = example("bounded_delta")
    layer, y = built("bounded_delta")
    p = {k: v[...] for k, v in layer.ssm.items()}
    delta0, _, _ = sel.select(p, jnp.zeros((1, 1, layer.d_inner)))              # z = dt_bias
    assert np.all((delta0 >= sel.DT_MIN * 0.999) & (delta0 <= sel.DT_MAX * 1.001))
    delta, _, _ = sel.select(p, 1e4 * jax.random.normal(jax.random.PRNGKey(0), (2, 5, layer.d_inner)))
    assert np.all((delta >= sel.DELTA_MIN * 0.999) & (delta <= sel.DELTA_MAX * 1.001))
    # "zoh" routes to ssm_jax.ops.selective_scan, so to the fused Pallas kernel (interpret
    # mode on a CPU); a callable discretize takes the generic linear_scan path
    fused = build("bounded_delta", backend="pallas")
    assert_close(jax.jit(lambda x: fused(x))(X), y)
    generic = dataclasses.replace(variant("bounded_delta"), discretize=zoh_selective)
    register("test_bounded_delta_generic", generic, overwrite=True)
    generic = make_layer("test_bounded_delta_generic", 4, d_state=6, rngs=nnx.Rngs(0))
    assert_close(jax.jit(lambda x: generic(x))(X), y)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_trains_on_the_quickstart(name, tmp_path, data_cache, monkeypatch):
    """The docs' command, in process: the tiny quickstart with import_modules and model.layer."""
    monkeypatch.setenv("SSM_JAX_CACHE", data_cache)
    config = quickstart.get_config("tiny")
    config.import_modules = (os.path.relpath(EXAMPLES[name][0]),)
    config.model.layer = name
    if name == "bounded_delta":
        config.model.activation = "none"     # the Mamba block has its own output projection
    config.update(num_steps=4, eval_every=4, checkpoint_every=4, log_every=2, progress_bar=False,
                  tensorboard=False)
    summary, model = train_and_evaluate(config, str(tmp_path))
    assert summary["steps"] == 4 and 0.0 <= summary["best_eval_accuracy"] <= 1.0
    rows = read_metrics(str(tmp_path))
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    assert {"eval", "test"} <= {r["split"] for r in rows}
    assert json.loads((tmp_path / "config.json").read_text())["model"]["layer"] == name
    assert model.blocks[0].layer.variant is variant(name)


def _malformed(name, **pieces):
    """A copy of the example registering ``name`` with some pieces replaced."""
    register(f"test_bad_{name}", dataclasses.replace(variant(name), **pieces), overwrite=True)
    return f"test_bad_{name}"


# (example, its replaced pieces, the message quoted in docs/custom_ssm.md), d_model=8, d_state=4
MALFORMED = [
    pytest.param("geom_diag", lambda geo: dict(A=lambda p: jnp.concatenate([geo.A(p), geo.A(p)], axis=-1)),
                 "DiagonalSSM.A must return (H, M) = (8, 2), got (8, 4)", id="diagonal-A-shape"),
    pytest.param("geom_diag", lambda geo: dict(dt=lambda p: jnp.exp(p["log_dt"])[:, None]),
                 "DiagonalSSM.dt must return (H,) = (8,), got (8, 1)", id="diagonal-dt-shape"),
    pytest.param("bounded_delta", lambda sel: dict(select=lambda p, u: (u, u, u)),
                 "SelectiveSSM.select -> B must return (b, L, N) = (2, 3, 4), got (2, 3, 16)",
                 id="selective-B-shape"),
    pytest.param("bounded_delta", lambda sel: dict(A=lambda p: -jnp.exp(p["a_log"])),
                 "SelectiveSSM.A failed (expected params -> (D, N) = (16, 4)): KeyError: 'a_log'",
                 id="selective-A-missing-param"),
]


@pytest.mark.parametrize("name,pieces,message", MALFORMED)
def test_malformed_variant_documented_error_before_any_compile(name, pieces, message):
    """The errors quoted in docs/custom_ssm.md, raised while building, with nothing compiled."""
    bad = _malformed(name, **pieces(example(name)))
    compiles, watching = [], [True]

    def listener(event, *args, **kwargs):              # stays registered (no unregister in every jax);
        if watching[0] and "backend_compile" in event:  # it records only while watching
            compiles.append(event)

    rngs = nnx.Rngs(0)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        with pytest.raises(VariantError) as err:
            make_layer(bad, 8, d_state=4, rngs=rngs)
    finally:
        watching[0] = False
    assert str(err.value) == message and message in open(DOC).read()
    assert compiles == []


def test_non_callable_piece_documented_error():
    message = "DiagonalSSM.discretize must be callable, got str 'bilinear'"
    with pytest.raises(VariantError) as err:
        dataclasses.replace(variant("geom_diag"), discretize="bilinear")
    assert str(err.value) == message and message in open(DOC).read()
