"""train_and_evaluate on a tiny generated ListOps: resume equivalence, determinism, metrics."""
import json
import os

import jax
import numpy as np
import pytest

from configs import quickstart
from ssm_jax.training import flatten_state, read_metrics, train_and_evaluate
from ssm_jax.training.steps import split_model


def tiny_config(**top):
    """The quickstart's tiny config: 64 train examples, 8 steps an epoch, 12 steps."""
    c = quickstart.get_config("tiny")
    c.update(tensorboard=False, progress_bar=False)
    c.update(top)
    return c


def params_of(model):
    _, params, rest = split_model(model)
    return jax.device_get(flatten_state({"params": params, "rest": rest}))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    os.environ.setdefault("SSM_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
    workdir = str(tmp_path_factory.mktemp("straight"))
    summary, model = train_and_evaluate(tiny_config(), workdir)
    return workdir, summary, params_of(model)


def assert_same_params(a, b, atol=1e-6):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=atol, rtol=1e-6, err_msg=k)


def test_workdir_contents_and_metrics_schema(straight):
    workdir, summary, _ = straight
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints"):
        assert os.path.exists(os.path.join(workdir, name)), name
    rows = read_metrics(workdir)
    assert {r["split"] for r in rows} == {"train", "eval", "test"}
    for r in rows:
        assert {"step", "split", "loss", "accuracy"} <= set(r)
        assert np.isfinite(r["loss"]) and 0.0 <= r["accuracy"] <= 1.0
        if r["split"] != "train":
            assert 0.0 < r["majority_baseline"] <= 1.0
    assert [r["step"] for r in rows if r["split"] == "eval"] == [6, 12]
    train = [r for r in rows if r["split"] == "train"]
    assert all(r["steps_per_s"] > 0 and r["tokens_per_s"] == pytest.approx(r["examples_per_s"] * 30, rel=1e-6)
               for r in train)  # tiny ListOps: inputs padded to 30 tokens
    assert all(r["examples_per_s"] == pytest.approx(8 * r["steps_per_s"]) for r in train)  # batch 8
    assert all(r["ssm_lr"] == pytest.approx(0.1 * r["lr"]) for r in train)  # tiny: lr 0.01, ssm_lr 0.001
    assert train[0]["lr"] == pytest.approx(0.01) and train[-1]["lr"] < 0.001  # warmup done, cosine down
    with open(os.path.join(workdir, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["steps"] == 12 and summary["best_eval_step"] in (6, 12)
    evals = {r["step"]: r["accuracy"] for r in rows if r["split"] == "eval"}
    assert summary["best_eval_accuracy"] == max(evals.values())
    tests = {r["step"]: r["accuracy"] for r in rows if r["split"] == "test"}
    assert summary["test_accuracy_at_best_eval"] == tests[summary["best_eval_step"]]
    # eval covers the whole split (24 examples, batches of 16: the padded remainder counts exactly)
    assert round(summary["final"]["eval_accuracy"] * 24) == pytest.approx(summary["final"]["eval_accuracy"] * 24)


def test_resume_after_kill_matches_straight_run(straight, tmp_path):
    _, summary_a, params_a = straight
    workdir = str(tmp_path / "resumed")
    # killed 2 steps after the checkpoint at step 6: those steps are lost and redone
    train_and_evaluate(tiny_config(), workdir, stop_at_step=8)
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    summary_b, model_b = train_and_evaluate(tiny_config(), workdir)
    assert_same_params(params_a, params_of(model_b))
    assert summary_b["final"]["train_loss"] == pytest.approx(summary_a["final"]["train_loss"], abs=1e-6)
    rows = [(r["step"], r["split"]) for r in read_metrics(workdir)]
    assert len(rows) == len(set(rows)), "metrics rows of the lost steps must not be duplicated"
    assert rows == [(r["step"], r["split"]) for r in read_metrics(straight[0])]


def test_same_seed_same_result_also_in_time_slices(straight, tmp_path):
    _, summary_a, params_a = straight
    workdir = str(tmp_path / "again")
    part, _ = train_and_evaluate(tiny_config(max_train_time_s=1e-9), workdir)  # stops after one step
    assert part["steps"] == 1 and not part["finished"]
    rows = read_metrics(workdir)
    assert {r["split"] for r in rows if r["step"] == 1} == {"train", "eval", "test"}
    summary, model = train_and_evaluate(tiny_config(), workdir)  # same seed, resumed at step 1
    assert_same_params(params_a, params_of(model), atol=0)
    assert summary["final"] == summary_a["final"] and summary["finished"]


def test_bad_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="config.eval_every"):
        train_and_evaluate(tiny_config(eval_every=0), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="optim.warmup_steps"):
        train_and_evaluate(tiny_config(num_steps=2), str(tmp_path / "b"))
