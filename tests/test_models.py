"""The sequence model and build_model: token, float, dual and lm inputs; pooling with padding;
dropout in train/eval; the recurrent step of an lm; config errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssm_jax.layers import S4, SSMParam
from ssm_jax.models import build_model, default_model_config


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """float32 matmuls in full precision (GPUs default to TF32), so the modes agree to ~1e-5."""
    with jax.default_matmul_precision("highest"):
        yield


B, L, V, C = 3, 8, 11, 5


def config(**overrides):
    cfg = default_model_config()
    cfg.update(dict(dict(d_model=8, n_layers=2, d_state=4), **overrides))
    return cfg


def token_info(**overrides):
    return dict(dict(num_classes=C, vocab_size=V, input_dim=None, seq_len=L, dual=False,
                     task="classification", pad_id=0), **overrides)


def call(model, *args):
    return nnx.jit(lambda m, *a: m(*a))(model, *args)


def tokens(shape, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), shape, 1, V)


@pytest.mark.parametrize("layer,overrides", [
    ("s4d", dict(pooling="mean", activation="glu")),
    ("s4", dict(pooling="last", norm="batch", prenorm=False)),
    ("mamba", dict(pooling="mean", activation="none")),
    ("dense", dict(pooling="none", bidirectional=True)),
])
def test_token_classification_shapes(layer, overrides):
    model = build_model(config(layer=layer, **overrides), token_info(), rngs=nnx.Rngs(0))
    model.eval()
    out = call(model, tokens((B, L)))
    expected = (B, L, C) if overrides["pooling"] == "none" else (B, C)
    assert out.shape == expected and np.all(np.isfinite(out))


def test_float_inputs_and_dual_inputs():
    info = token_info(vocab_size=None, input_dim=2, pad_id=None)
    model = build_model(config(layer="mamba", activation="none"), info, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (B, L, 2))
    assert call(model, x).shape == (B, C)

    dual = build_model(config(layer="s4d", bidirectional=True), token_info(dual=True), rngs=nnx.Rngs(0))
    x = tokens((B, 2, L))
    out = call(dual, x)
    assert out.shape == (B, C)
    # the head sees [h1, h2, h1 * h2, h1 - h2]: swapping the two documents changes the logits
    assert not np.allclose(call(dual, x[:, ::-1]), out)
    # both documents go through the same backbone: the pair is the concatenation of pools
    h = nnx.jit(lambda m, x: m.backbone(x).mean(1))(dual, x.reshape(2 * B, L))
    h1, h2 = h[0::2], h[1::2]
    feats = jnp.concatenate([h1, h2, h1 * h2, h1 - h2], axis=-1)
    np.testing.assert_allclose(nnx.jit(lambda m, f: m.head(f))(dual, feats), out, rtol=1e-5, atol=1e-5)


def test_mean_pooling_ignores_padding():
    model = build_model(config(layer="s4d"), token_info(), rngs=nnx.Rngs(0))
    model.eval()
    x = tokens((B, L))
    lengths = jnp.array([8, 5, 3])
    padded = jnp.where(jnp.arange(L)[None] < lengths[:, None], x, 0)
    longer = jnp.pad(padded, ((0, 0), (0, 4)))                   # more padding at the end
    out = call(model, padded)
    np.testing.assert_allclose(call(model, longer), out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(call(model, padded, lengths), out, rtol=1e-5, atol=1e-5)


def test_lm_logits_causal_and_step_matches():
    info = token_info(task="lm", num_classes=None)
    model = build_model(config(layer="s4d", dropout=0.1), info, rngs=nnx.Rngs(0))
    model.eval()
    x = tokens((2, L))
    logits = call(model, x)
    assert logits.shape == (2, L, V)
    later = call(model, x.at[:, 5].set(1 + (x[:, 5] % (V - 1))))
    np.testing.assert_allclose(later[:, :5], logits[:, :5], rtol=1e-5, atol=1e-5)
    assert not np.allclose(later[:, 5:], logits[:, 5:])

    def steps(m, x):
        return jax.lax.scan(m.step, m.init_state(x.shape[0]), x.T)[1].transpose(1, 0, 2)

    np.testing.assert_allclose(nnx.jit(steps)(model, x), logits, rtol=1e-4, atol=1e-4)


def test_dropout_on_in_train_off_in_eval():
    model = build_model(config(layer="s4d", dropout=0.5), token_info(), rngs=nnx.Rngs(0, dropout=1))
    x = tokens((B, L))
    model.train()
    assert not np.allclose(call(model, x), call(model, x))       # fresh dropout masks each call
    model.eval()
    np.testing.assert_array_equal(call(model, x), call(model, x))


def test_ssm_params_live_in_the_layers_and_s4_gets_seq_len():
    model = build_model(config(layer="s4"), token_info(), rngs=nnx.Rngs(0))
    paths = [path for path, node in nnx.iter_graph(model) if isinstance(node, SSMParam)]
    assert len(paths) == 2 * 7                                  # 7 per S4 layer, 2 layers
    assert all(p[0] == "blocks" and p[2] == "layer" for p in paths)
    assert all(isinstance(b.layer, S4) and b.layer.l_max == L for b in model.blocks)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="unknown fields"):
        build_model(dict(config(), n_heads=2), token_info(), rngs=nnx.Rngs(0))
    with pytest.raises(KeyError, match="no layer named"):
        build_model(config(layer="nope"), token_info(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_model(config(pooling="max"), token_info(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="lm"):
        build_model(config(bidirectional=True), token_info(task="lm"), rngs=nnx.Rngs(0))
    model = build_model(config(n_layers=1), token_info(), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="x must have an integer dtype"):
        model(jnp.zeros((B, L)))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, L\)"):
        model(jnp.zeros((B, 2, L), jnp.int32))
    with pytest.raises(ValueError, match="lengths must have shape"):
        model(tokens((B, L)), jnp.array([1, 2]))
