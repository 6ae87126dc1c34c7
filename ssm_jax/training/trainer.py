"""``train_and_evaluate(config, workdir)``: the training loop behind ``experiments/train.py``.

One run: import the user's modules, load the task, build the model, train it data-parallel
over the local devices, evaluate on the full val split every ``eval_every`` steps (and on
the test split whenever val improves, and at the end), checkpoint every
``checkpoint_every`` steps, and write metrics, a plot and ``summary.json`` to ``workdir``.
Started again with the same ``workdir`` it resumes from the latest checkpoint: same
step, optimizer state, RNG state and data position (epoch, batch index).
"""
from __future__ import annotations

import functools
import json
import os
import time

import jax
import numpy as np
from absl import logging
from flax import nnx

from ssm_jax import data as data_lib
from ssm_jax import models
from ssm_jax.training import metrics as metrics_lib
from ssm_jax.training.checkpoint import Checkpointer
from ssm_jax.training.imports import import_user_modules
from ssm_jax.training.optim import DEFAULT_GROUP, SSM_GROUP, group_schedules, make_optimizer
from ssm_jax.training.progress import Progress
from ssm_jax.training.sharding import check_batch_size, make_mesh, replicate, replicated, shard_batch
from ssm_jax.training.steps import eval_step, init_train_state, merge_model, split_model, train_step

POSITIVE_INT_FIELDS = ("batch_size", "eval_batch_size", "eval_every", "checkpoint_every",
                       "keep_checkpoints", "log_every")


def check_config(config) -> None:
    """Raise ValueError naming the first missing or invalid top-level field."""
    for name in POSITIVE_INT_FIELDS + ("num_epochs", "num_steps", "seed"):
        if name not in config:
            raise ValueError(f"config has no field {name!r} (start from ssm_jax.training.default_config())")
    for name in POSITIVE_INT_FIELDS:
        if not isinstance(config[name], int) or config[name] < 1:
            raise ValueError(f"config.{name} must be a positive int, got {config[name]!r}")
    if config.num_steps <= 0 and config.num_epochs <= 0:
        raise ValueError(f"set config.num_steps > 0 or config.num_epochs > 0, got num_steps="
                         f"{config.num_steps}, num_epochs={config.num_epochs}")


def total_steps(config, steps_per_epoch: int) -> int:
    """``config.num_steps`` if positive, else ``num_epochs * steps_per_epoch``."""
    return int(config.num_steps) if config.num_steps > 0 else int(config.num_epochs * steps_per_epoch)


def host_batch(inputs: np.ndarray, labels: np.ndarray) -> dict:
    """A batch dict; integer token inputs are widened to int32."""
    if np.issubdtype(inputs.dtype, np.integer):
        inputs = inputs.astype(np.int32)
    return {"inputs": inputs, "labels": labels.astype(np.int32)}


def padded_batches(split, batch_size: int):
    """All of ``split`` in order, the last batch padded to ``batch_size``; ``mask`` marks real rows."""
    for inputs, labels in data_lib.batches(split, batch_size, seed=0, shuffle=False, drop_remainder=False):
        n = labels.shape[0]
        pad = batch_size - n
        batch = host_batch(inputs, labels)
        if pad:
            batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
        batch["mask"] = np.arange(batch_size) < n
        yield batch


def evaluate(eval_fn, state, split, batch_size: int, mesh) -> dict:
    """Exact mean loss and accuracy of the model in ``state`` over the whole ``split``."""
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for batch in padded_batches(split, batch_size):
        out = jax.device_get(eval_fn(state, shard_batch(batch, mesh)))
        for k in totals:
            totals[k] += float(out[k])
    return {"loss": totals["loss"] / totals["count"], "accuracy": totals["correct"] / totals["count"],
            "count": int(totals["count"])}


def _fresh_record() -> dict:
    return {"step": 0, "epoch": 0, "batch_index": 0, "elapsed_s": 0.0, "best_eval_accuracy": None,
            "best_eval_step": None, "test_accuracy_at_best": None, "last": {}}


def write_config(config, workdir: str) -> None:
    """Write the resolved config to ``workdir/config.json``."""
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def _summary(record: dict, task_info: dict, num_steps: int, num_params: int, n_devices: int) -> dict:
    return {
        "task": task_info.get("name"),
        "best_eval_accuracy": record["best_eval_accuracy"],
        "best_eval_step": record["best_eval_step"],
        "test_accuracy_at_best_eval": record["test_accuracy_at_best"],
        "majority_baseline": dict(task_info.get("majority_baseline", {})),
        "final": record["last"],
        "steps": record["step"],
        "finished": record["step"] == num_steps,
        "num_steps": num_steps,
        "num_params": num_params,
        "num_devices": n_devices,
        "train_time_s": round(record["elapsed_s"], 2),
    }


def train_batches(split, batch_size: int, *, seed: int, start_step: int, steps_per_epoch: int):
    """Yield ``(epoch, inputs, labels)`` from global step ``start_step`` on, epoch after epoch."""
    epoch, start = divmod(start_step, steps_per_epoch)
    while True:
        for inputs, labels in data_lib.batches(split, batch_size, seed=seed, epoch=epoch, start_batch=start):
            yield epoch, inputs, labels
        epoch, start = epoch + 1, 0


def throughput(steps: int, seconds: float, batch_size: int, tokens_per_example: int) -> dict:
    """Training speed over a logging window: steps/s, examples/s and tokens/s (input tokens)."""
    rate = steps / max(seconds, 1e-9)
    return {"steps_per_s": rate, "examples_per_s": rate * batch_size,
            "tokens_per_s": rate * batch_size * tokens_per_example}


def mean_metrics(window: list) -> dict:
    """Mean of each metric over a list of per-step metric dicts (device scalars)."""
    window = jax.device_get(window)
    return {k: float(np.mean([w[k] for w in window])) for k in window[0]}


class Evaluator:
    """Evaluates on val (and on test when val improves, or at the end) and tracks the best."""

    def __init__(self, eval_fn, task, batch_size: int, mesh, writer):
        self.eval_fn, self.task, self.batch_size, self.mesh, self.writer = eval_fn, task, batch_size, mesh, writer
        self.baseline = dict(task.info.get("majority_baseline", {}))

    def _split(self, state, step: int, split: str, row_split: str) -> dict:
        out = evaluate(self.eval_fn, state, self.task.splits[split], self.batch_size, self.mesh)
        extra = {"majority_baseline": self.baseline[split]} if split in self.baseline else {}
        self.writer.write(step, row_split, loss=out["loss"], accuracy=out["accuracy"], **extra)
        return out

    def __call__(self, state, step: int, record: dict, final: bool) -> None:
        """Evaluate ``state`` at ``step``, updating ``record`` (best and last metrics) in place."""
        ev = self._split(state, step, "val", "eval")
        record["last"].update(eval_loss=ev["loss"], eval_accuracy=ev["accuracy"])
        improved = record["best_eval_accuracy"] is None or ev["accuracy"] > record["best_eval_accuracy"]
        if improved or final:
            te = self._split(state, step, "test", "test")
            record["last"].update(test_loss=te["loss"], test_accuracy=te["accuracy"])
            if improved:
                record.update(best_eval_accuracy=ev["accuracy"], best_eval_step=step,
                              test_accuracy_at_best=te["accuracy"])
        logging.info("step %d: eval accuracy %.4f (best %.4f at step %d), majority baseline %s",
                     step, ev["accuracy"], record["best_eval_accuracy"], record["best_eval_step"],
                     self.baseline.get("val"))


def load_task(config):
    """The task of ``config.data`` (loaded or generated by ``ssm_jax.data.get_task``)."""
    start = time.perf_counter()
    task = data_lib.get_task(config.data.task, data_dir=config.data.data_dir, seed=config.data.seed,
                             **config.data.options.to_dict())
    logging.info("data %s ready in %.1f s: %s", task.name, time.perf_counter() - start,
                 {k: len(v) for k, v in task.splits.items()})
    return task


def train_and_evaluate(config, workdir: str, *, stop_at_step: int | None = None):
    """Train and evaluate as configured, writing everything under ``workdir``.

    Returns ``(summary, model)``: the summary dict (also in ``workdir/summary.json``:
    best eval accuracy, its step and the test accuracy there, the final metrics) and the
    trained model (an ``nnx.Module`` in eval mode). ``config.max_train_time_s`` (> 0) stops
    gracefully after that many seconds of this session (evaluating and checkpointing the
    last step; ``summary["finished"]`` is False), so a long run can be done in slices.
    ``stop_at_step`` stops without evaluating or checkpointing, as a killed run would.
    """
    check_config(config)
    import_user_modules(config.get("import_modules"))
    os.makedirs(workdir, exist_ok=True)
    write_config(config, workdir)
    task = load_task(config)
    mesh = make_mesh()
    check_batch_size(config.batch_size, mesh, "config.batch_size")
    check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
    steps_per_epoch = data_lib.num_batches(task.splits["train"], config.batch_size)
    num_steps = total_steps(config, steps_per_epoch)

    model = models.build_model(config.model, task.info, rngs=nnx.Rngs(config.seed))
    defs, params, rest = split_model(model)
    num_params = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
    tx = make_optimizer(config.optim, num_steps)
    schedules = group_schedules(config.optim, num_steps)
    state = replicate(init_train_state(params, rest, tx), mesh)
    logging.info("model %s with %d parameters; %d steps (%d per epoch) on %d device(s)",
                 config.model.layer, num_params, num_steps, steps_per_epoch, mesh.devices.size)

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=config.checkpoint_every,
                        keep=config.keep_checkpoints)
    record = _fresh_record()
    if ckpt.latest_step() is not None:
        state, record = ckpt.restore(state)
        state = replicate(state, mesh)
        metrics_lib.truncate_metrics(workdir, record["step"])
        logging.info("resumed from the checkpoint at step %d (epoch %d, batch %d)",
                     record["step"], record["epoch"], record["batch_index"])

    repl = replicated(mesh)
    train_fn = jax.jit(functools.partial(train_step, defs, tx), out_shardings=(repl, repl))
    eval_fn = jax.jit(functools.partial(eval_step, defs), out_shardings=repl)
    writer = metrics_lib.MetricWriter(workdir, tensorboard=config.tensorboard)
    evaluator = Evaluator(eval_fn, task, config.eval_batch_size, mesh, writer)
    progress = Progress(record["step"], num_steps, log_every=config.log_every, bar=config.progress_bar)
    session_start = time.perf_counter()
    run_start = session_start - record["elapsed_s"]
    time_limit = config.get("max_train_time_s", 0)
    step, out_of_time = record["step"], False
    last_step = num_steps if stop_at_step is None else min(num_steps, stop_at_step)
    batches = train_batches(task.splits["train"], config.batch_size, seed=config.seed, start_step=step,
                            steps_per_epoch=steps_per_epoch)
    window, window_start = [], time.perf_counter()
    tokens_per_example = int(np.prod(task.splits["train"].inputs.shape[1:2 + bool(task.info.get("dual"))]))
    try:
        while step < last_step and not out_of_time:
            epoch, inputs, labels = next(batches)
            state, m = train_fn(state, shard_batch(host_batch(inputs, labels), mesh))
            window.append(m)
            step += 1
            record.update(step=step, epoch=step // steps_per_epoch, batch_index=step % steps_per_epoch)
            final = step == num_steps
            out_of_time = 0 < time_limit < time.perf_counter() - session_start
            stop = final or out_of_time  # a graceful stop: log, evaluate and checkpoint this step
            if step % config.log_every == 0 or stop:
                n_window, mean, window = len(window), mean_metrics(window), []  # mean_metrics syncs
                speed = throughput(n_window, time.perf_counter() - window_start, config.batch_size,
                                   tokens_per_example)
                lrs = {"lr": float(schedules[DEFAULT_GROUP](step - 1)),  # of this step's update
                       "ssm_lr": float(schedules[SSM_GROUP](step - 1))}
                writer.write(step, "train", epoch=epoch, **mean, **lrs, **speed)
                record["last"].update(train_loss=mean["loss"], train_accuracy=mean["accuracy"])
                progress.update(step, loss=mean["loss"], acc=mean["accuracy"])
            else:
                progress.update(step)
            if step % config.eval_every == 0 or stop:
                evaluator(state, step, record, stop)
            record["elapsed_s"] = time.perf_counter() - run_start
            ckpt.save(step, state, record, force=stop)
            if not window:  # a window was just logged: time the next one from here (no eval, no save)
                window_start = time.perf_counter()
    finally:
        progress.close()
        writer.close()
        ckpt.close()

    summary = _summary(record, dict(task.info, name=task.name), num_steps, num_params, mesh.devices.size)
    if out_of_time:
        logging.info("stopped after max_train_time_s=%s s at step %d of %d; run again to continue",
                     time_limit, step, num_steps)
    if step == num_steps or out_of_time:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        metrics_lib.plot_curves(workdir)
        logging.info("summary: %s", json.dumps(summary))
    return summary, merge_model(defs, state)
