"""End to end: ``python -m experiments.train`` on the tiny quickstart, with a user's SSM module."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_MODULE = '''
"""A user's file: registers a layer under a new name (issue 6)."""
from ssm_jax import layers


def my_ssm(d_model, *, rngs, **kwargs):
    return layers.S4D(d_model, rngs=rngs, **kwargs)


layers.register("e2e_user_ssm", my_ssm)
'''


def _train(workdir, *flags, env):
    cmd = [sys.executable, "-m", "experiments.train", "--config=configs/quickstart.py:tiny",
           f"--workdir={workdir}", *flags]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_train_cli_writes_workdir_and_resumes(tmp_path):
    user_file = tmp_path / "user_ssm.py"
    user_file.write_text(USER_MODULE)
    env = dict(os.environ, SSM_JAX_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    workdir = tmp_path / "run"
    flags = (f"--config.import_modules={user_file}", "--config.model.layer=e2e_user_ssm",
             "--config.model.d_state=6")
    out = _train(workdir, *flags, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best eval accuracy" in out.stdout and "majority baseline" in out.stdout

    names = set(os.listdir(workdir))
    assert {"config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints", "tensorboard"} <= names
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["layer"] == "e2e_user_ssm" and config["model"]["d_state"] == 6
    assert sorted(os.listdir(workdir / "checkpoints")) == ["12", "6"]
    assert any(f.startswith("events") for f in os.listdir(workdir / "tensorboard"))
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval", "test"}
    assert all("majority_baseline" in r for r in rows if r["split"] != "train")
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 12 and 0.0 <= summary["best_eval_accuracy"] <= 1.0
    assert "step 12/12" in out.stderr and "steps/s" in out.stderr and "ETA" in out.stderr

    again = _train(workdir, *flags, env=env)  # same workdir: resumes at the end, trains nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from the checkpoint at step 12" in again.stderr
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == len(rows)


def test_train_cli_unknown_layer_is_a_clear_error(tmp_path):
    env = dict(os.environ, SSM_JAX_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    out = _train(tmp_path / "bad", "--config.model.layer=no_such_layer", env=env)
    assert out.returncode != 0
    assert "no_such_layer" in out.stderr and "available" in out.stderr
