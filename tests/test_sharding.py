"""Data parallelism: 4 forced CPU devices give the same training run as 1 device.

Each run is a subprocess of ``experiments.train``, because XLA_FLAGS must be set before
jax is imported. Losses (train, eval, test) must agree to ~1e-5. Parameters are not
compared element-wise: Adam turns numerically-zero gradients (e.g. of the padding token's
embedding) into lr-sized steps whose sign depends on summation order.
"""
import json
import os
import subprocess
import sys

import numpy as np

from configs import quickstart
from ssm_jax.data import get_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_env(n_devices, **extra):
    """A subprocess's environment with n CPU devices (the session's other XLA_FLAGS kept)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n_devices}"
    return dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", **extra)


def _start(n_devices, workdir, cache):
    env = _cpu_env(n_devices, SSM_JAX_CACHE=str(cache))
    cmd = [sys.executable, "-m", "experiments.train", "--config=configs/quickstart.py:tiny",
           f"--workdir={workdir}", "--config.num_steps=6", "--config.tensorboard=False"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _summary(proc, workdir):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


def test_four_devices_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SSM_JAX_CACHE", str(tmp_path / "cache"))
    c = quickstart.get_config("tiny")
    get_task(c.data.task, seed=c.data.seed, **c.data.options.to_dict())  # generate once, before both runs
    dirs = {n: tmp_path / f"d{n}" for n in (1, 4)}
    procs = {n: _start(n, dirs[n], tmp_path / "cache") for n in dirs}
    one, four = (_summary(procs[n], dirs[n]) for n in (1, 4))
    assert (one["num_devices"], four["num_devices"]) == (1, 4)
    for key in ("train_loss", "eval_loss", "test_loss"):  # accuracies are discrete: a near-tie may flip
        np.testing.assert_allclose(four["final"][key], one["final"][key], rtol=1e-5, atol=1e-5, err_msg=key)


def test_batch_size_not_divisible_is_an_error():
    env = _cpu_env(4)
    code = ("from ssm_jax.training import sharding\n"
            "mesh = sharding.make_mesh()\n"
            "sharding.check_batch_size(8, mesh)\n"
            "try:\n    sharding.check_batch_size(10, mesh, 'config.batch_size')\n"
            "except ValueError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERR config.batch_size must be a positive multiple of the number of devices (4)" in out.stdout
