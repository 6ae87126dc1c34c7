"""Unit tests of the training pieces on a tiny nnx module (no data, no real model)."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssm_jax.layers.params import SSMParam
from ssm_jax.training import checkpoint as ckpt_lib
from ssm_jax.training import imports, metrics, optim, progress, sharding, steps


class Frozen(nnx.Variable):
    """A non-Param variable: must not be trained."""


class Tiny(nnx.Module):
    def __init__(self, rngs, dropout=0.0):
        self.lin = nnx.Linear(3, 4, rngs=rngs)
        self.A = SSMParam(jnp.full((4,), 0.5))
        self.F = Frozen(jnp.ones((4,)))
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.lin(x.mean(axis=1)) * self.A[...] + self.F[...])


def optim_cfg(**kw):
    base = dict(lr=0.1, ssm_lr=0.01, weight_decay=0.5, ssm_weight_decay=0.0, warmup_steps=0,
                end_lr_fraction=0.0, grad_clip=0.0, b1=0.9, b2=0.999, eps=1e-12)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def tiny_batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return {"inputs": rng.normal(size=(n, 5, 3)).astype(np.float32),
            "labels": rng.integers(0, 4, size=(n,)).astype(np.int32)}


def tiny_state(cfg=None, total=100, dropout=0.0, seed=0):
    defs, params, rest = steps.split_model(Tiny(nnx.Rngs(seed), dropout))
    tx = optim.make_optimizer(cfg or optim_cfg(), total)
    return defs, tx, steps.init_train_state(params, rest, tx)


def test_param_labels_by_type():
    _, params, _ = steps.split_model(Tiny(nnx.Rngs(0)))
    labels = jax.tree_util.tree_leaves(optim.param_labels(params))
    assert sorted(labels) == ["default", "default", "ssm"]


def test_groups_get_own_lr_and_weight_decay():
    # First AdamW step with eps ~ 0: delta = -lr * (sign(g) + wd * p).
    cfg = optim_cfg()
    defs, tx, state = tiny_state(cfg)
    new, _ = jax.jit(functools.partial(steps.train_step, defs, tx))(state, tiny_batch())
    p0, p1 = state["params"], new["params"]
    dA = np.asarray(p1["A"][...] - p0["A"][...])
    np.testing.assert_allclose(np.abs(dA), cfg.ssm_lr, rtol=1e-4)  # ssm_lr, no decay
    k0 = np.asarray(p0["lin"]["kernel"][...])
    dk = np.asarray(p1["lin"]["kernel"][...]) - k0
    sign = -np.sign(dk + cfg.lr * cfg.weight_decay * k0)
    np.testing.assert_allclose(dk, -cfg.lr * (sign + cfg.weight_decay * k0), rtol=1e-4, atol=1e-6)
    # frozen variable untouched, step counted
    np.testing.assert_array_equal(new["rest"]["F"][...], state["rest"]["F"][...])
    assert int(new["step"]) == 1


def test_schedule_warmup_then_cosine():
    s = optim.make_schedule(1.0, warmup_steps=10, total_steps=110, end_fraction=0.1)
    assert float(s(0)) == 0.0
    np.testing.assert_allclose(float(s(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(s(60)), 0.55, rtol=1e-5)  # half-way down the cosine
    np.testing.assert_allclose(float(s(110)), 0.1, rtol=1e-5)
    vals = [float(s(t)) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_schedule_and_optimizer_reject_bad_input():
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.make_schedule(1.0, warmup_steps=50, total_steps=50)
    with pytest.raises(ValueError, match="grad_clip"):
        optim.make_optimizer(optim_cfg(grad_clip=-1.0), 10)
    cfg = optim_cfg()
    del cfg["ssm_lr"]
    with pytest.raises(ValueError, match="ssm_lr"):
        optim.make_optimizer(cfg, 10)


def test_grad_clip_bounds_update():
    # With clipping to a tiny norm, SGD-like first step is the same (Adam normalizes),
    # but the reported grad_norm is the unclipped one and the step still runs.
    defs, tx, state = tiny_state(optim_cfg(grad_clip=1e-3))
    new, m = jax.jit(functools.partial(steps.train_step, defs, tx))(state, tiny_batch())
    assert float(m["grad_norm"]) > 1e-3
    assert np.all(np.isfinite(np.asarray(new["params"]["A"][...])))


def test_train_step_deterministic_with_dropout():
    defs, tx, _ = tiny_state(dropout=0.5)
    fn = jax.jit(functools.partial(steps.train_step, defs, tx))

    def run():
        state = tiny_state(dropout=0.5)[2]
        losses = []
        for i in range(3):
            state, m = fn(state, tiny_batch(i))
            losses.append(float(m["loss"]))
        return losses, state
    (l1, s1), (l2, s2) = run(), run()
    assert l1 == l2
    # dropout advanced its RNG counter: the RNG state is part of the train state
    counts = [int(x) for x in jax.tree_util.tree_leaves(s1["rest"]) if x.dtype == jnp.uint32]
    assert counts and max(counts) == 3


def test_eval_step_masks_padding():
    defs, _, state = tiny_state()
    b = tiny_batch()
    full = steps.eval_step(defs, state, {**b, "mask": np.ones(8, bool)})
    half = steps.eval_step(defs, state, {k: v[:4] for k, v in b.items()} | {"mask": np.ones(4, bool)})
    masked = steps.eval_step(defs, state, {**b, "mask": np.arange(8) < 4})
    assert float(full["count"]) == 8 and float(masked["count"]) == 4
    np.testing.assert_allclose(float(masked["loss"]), float(half["loss"]), rtol=1e-6)
    assert float(masked["correct"]) == float(half["correct"])


def test_classification_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        steps.classification_loss(jnp.zeros((4, 2, 3)), jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match="labels"):
        steps.classification_loss(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32))


def test_complex_params_descend():
    class C(nnx.Module):
        def __init__(self):
            self.z = SSMParam(jnp.array([1.0 + 2.0j]))

        def __call__(self, x):
            return jnp.stack([jnp.abs(self.z[...] * x[:, 0, 0]) ** 2, jnp.zeros(x.shape[0])], -1)

    defs, params, rest = steps.split_model(C())
    tx = optim.make_optimizer(optim_cfg(ssm_lr=0.05), 50)
    state = steps.init_train_state(params, rest, tx)
    batch = {"inputs": np.ones((2, 1, 1), np.float32), "labels": np.ones(2, np.int32)}
    fn = jax.jit(functools.partial(steps.train_step, defs, tx))
    first = None
    for _ in range(20):
        state, m = fn(state, batch)
        first = first if first is not None else float(m["loss"])
    assert float(m["loss"]) < first  # |z| shrinks towards 0 on both real and imaginary parts


def test_checkpoint_roundtrip_and_keep(tmp_path):
    defs, tx, state = tiny_state(dropout=0.5)
    fn = jax.jit(functools.partial(steps.train_step, defs, tx))
    ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), every=2, keep=2)
    saved = {}
    for i in range(1, 7):
        state, _ = fn(state, tiny_batch(i))
        if ck.save(i, state, {"step": i, "epoch": 0, "batch_index": i}):
            saved[i] = jax.device_get(ckpt_lib.flatten_state(state))
    ck.close()
    assert sorted(saved) == [2, 4, 6]
    ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), every=2, keep=2)
    assert ck.manager.all_steps() == [4, 6]
    _, _, template = tiny_state(dropout=0.5, seed=1)
    restored, record = ck.restore(template)
    assert record == {"step": 6, "epoch": 0, "batch_index": 6}
    flat = jax.device_get(ckpt_lib.flatten_state(restored))
    assert set(flat) == set(saved[6])
    for k in flat:
        np.testing.assert_array_equal(flat[k], saved[6][k])
    # the restored state trains on exactly like the original
    s_a, m_a = fn(state, tiny_batch(7))
    s_b, m_b = fn(restored, tiny_batch(7))
    assert float(m_a["loss"]) == float(m_b["loss"])
    ck.close()


def test_checkpoint_saves_the_record_as_of_the_save(tmp_path):
    """The save completes in the background while the trainer mutates its record (step,
    data position): the checkpoint must hold the record as it was when saved."""
    _, _, state = tiny_state()
    ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), every=1, keep=1)
    record = {"step": 6, "epoch": 0, "batch_index": 6, "last": {"train_loss": 1.0}}
    assert ck.save(6, state, record)
    record.update(step=7, batch_index=7)       # what the training loop does next
    record["last"]["train_loss"] = 2.0
    ck.close()
    _, restored = ckpt_lib.Checkpointer(str(tmp_path / "ck"), every=1, keep=1).restore(state)
    assert restored == {"step": 6, "epoch": 0, "batch_index": 6, "last": {"train_loss": 1.0}}


def test_checkpoint_mismatch_is_clear():
    _, _, state = tiny_state()
    flat = ckpt_lib.flatten_state(state)
    flat.pop(next(iter(flat)))
    with pytest.raises(ValueError, match="does not match"):
        ckpt_lib.unflatten_state(flat, state)


def test_metric_writer_rows_and_plot(tmp_path):
    w = metrics.MetricWriter(str(tmp_path))
    w.write(10, "train", loss=np.float32(1.5), accuracy=0.25)
    w.write(10, "eval", loss=1.2, accuracy=0.4, majority_baseline=0.3)
    w.write(20, "train", loss=1.0, accuracy=0.5)
    with pytest.raises(ValueError, match="split"):
        w.write(20, "valid", loss=1.0, accuracy=0.5)
    with pytest.raises(ValueError, match="accuracy"):
        w.write(20, "eval", loss=1.0)
    w.close()
    rows = metrics.read_metrics(str(tmp_path))
    assert [(r["step"], r["split"]) for r in rows] == [(10, "train"), (10, "eval"), (20, "train")]
    assert rows[1]["majority_baseline"] == 0.3
    json.dumps(rows)
    metrics.truncate_metrics(str(tmp_path), 10)
    assert len(metrics.read_metrics(str(tmp_path))) == 2
    assert os.path.getsize(metrics.plot_curves(str(tmp_path))) > 1000
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))


def test_progress_rate_and_eta():
    p = progress.Progress(10, 110, log_every=5, bar=False)
    p._t0 -= 10.0  # pretend 10 s passed
    p.update(30)
    assert 1.9 < p.rate() < 2.1
    assert 38 < p.eta() < 42
    assert progress.format_duration(3725) == "1:02:05"


def test_sharding_helpers_on_one_device():
    mesh = sharding.make_mesh()
    sharding.check_batch_size(8, mesh)
    with pytest.raises(ValueError, match="batch_size"):
        sharding.check_batch_size(0, mesh)
    b = sharding.shard_batch(tiny_batch(), mesh)
    assert b["inputs"].shape == (8, 5, 3)


def test_import_user_modules(tmp_path, monkeypatch):
    f = tmp_path / "my_variant_mod.py"
    f.write_text("REGISTERED = True\n")
    (mod,) = imports.import_user_modules([str(f)])
    assert mod.REGISTERED
    monkeypatch.syspath_prepend(str(tmp_path))
    assert imports.import_user_modules("my_variant_mod")[0].REGISTERED
    with pytest.raises(FileNotFoundError, match="nope.py"):
        imports.import_user_modules(["nope.py"])
    with pytest.raises(ModuleNotFoundError, match="no_such_module_xyz"):
        imports.import_user_modules(["no_such_module_xyz"])
    assert imports.import_user_modules(None) == []


def test_quiet_library_logs_drops_only_library_info():
    import logging as std_logging
    progress.quiet_library_logs()
    f = [f for f in std_logging.getLogger("absl").filters if isinstance(f, progress._DropChatter)][0]

    def rec(path, level):
        return std_logging.LogRecord("absl", level, path, 1, "msg", None, None)
    assert not f.filter(rec("/x/site-packages/orbax/checkpoint/a.py", std_logging.INFO))
    assert f.filter(rec("/x/site-packages/orbax/checkpoint/a.py", std_logging.WARNING))
    assert f.filter(rec("/x/ssm_jax/training/trainer.py", std_logging.INFO))


def test_format_summary_lines():
    text = progress.format_summary({
        "task": "listops", "steps": 10, "train_time_s": 65, "best_eval_accuracy": 0.5, "best_eval_step": 10,
        "test_accuracy_at_best_eval": 0.25, "majority_baseline": {"val": 0.1, "test": 0.2},
        "final": {"eval_accuracy": 0.5, "test_accuracy": 0.25, "train_loss": 1.0}})
    assert "best eval accuracy 50.00% at step 10 (majority baseline 10.00%)" in text
    assert "test accuracy at that step 25.00% (majority baseline 20.00%)" in text
    assert "0:01:05" in text
