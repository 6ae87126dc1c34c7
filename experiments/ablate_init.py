r"""The initialization ablation: HiPPO against random A, frozen and trained, over seeds.

    python -m experiments.ablate_init --config=configs/ablations/init.py --workdir=/tmp/ablate_init
    python -m experiments.ablate_init --config=configs/ablations/init.py --workdir=/tmp/a \
        --config.inits='("s4d_lin","random_diag_real")' --config.seeds='(0,)'

Every cell of the grid (init x frozen/trained A x seed) trains the same model (width,
depth, state size N, pooling), with the same optimizer, steps and data, through
:func:`ssm_jax.training.train_and_evaluate`; only the SSM layer and its ``init`` /
``trainable_A`` differ (:data:`INITS`). Each cell lives in ``workdir/<init>-<mode>-seed<s>/``
(the trainer's files plus ``eigenvalues.npz`` and ``result.json``); a cell whose
``result.json`` exists is skipped when the grid is run again, and a cell killed midway
resumes from its last checkpoint.

At the end the workdir gets ``ablation.csv`` / ``ablation.md`` (final and best eval
accuracy and test accuracy, mean and std over seeds, one row per init and frozen/trained
A), ``curves.png`` (eval accuracy, mean over seeds with a one-std band) and
``eigenvalues.png`` (the eigenvalues of each initial A and of the trained A), and
``ablation.json`` (the rows and every cell's summary).
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # before jax starts: the jaxlib 0.10 XLA:CPU DenseSSM deadlock
    from experiments import xla_workarounds

    xla_workarounds.apply()

import copy  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from flax import nnx  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import ablation_report as report  # noqa: E402
from ssm_jax import data as data_lib  # noqa: E402
from ssm_jax import models  # noqa: E402
from ssm_jax.layers import registry as layer_registry  # noqa: E402
from ssm_jax.training import progress, read_metrics, train_and_evaluate  # noqa: E402
from ssm_jax.training.imports import import_user_modules  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Init:
    """One initialization of the grid: the registered layer and its constructor kwargs."""

    label: str
    layer: str
    kwargs: dict
    principled: bool


# The grid's initializations (``config.inits`` picks from these by name).
INITS = {
    "s4_legs": Init("S4 HiPPO-LegS (DPLR)", "s4", {"init": "legs"}, True),
    "s4d_legs": Init("S4D-LegS", "s4d", {"init": "legs"}, True),
    "s4d_inv": Init("S4D-Inv", "s4d", {"init": "inv"}, True),
    "s4d_lin": Init("S4D-Lin", "s4d", {"init": "lin"}, True),
    "dense_legs": Init("dense HiPPO-LegS", "dense", {"init": "legs"}, True),
    "random_dense": Init("random dense Gaussian", "dense", {"init": "random"}, False),
    "random_diag_real": Init("random real diagonal", "s4d", {"init": "random_real"}, False),
    "random_diag_complex": Init("random complex diagonal", "s4d", {"init": "random_complex"}, False),
}
MODES = report.MODES  # ("frozen", "trained")
RESULT_FILE = "result.json"
EIGEN_FILE = "eigenvalues.npz"


def init_spec(name: str) -> Init:
    """The grid row called ``name``: one of :data:`INITS`, or any registered layer name
    (a user's variant, registered by a module in ``config.import_modules``), trained with
    its own default initialization."""
    if name in INITS:
        return INITS[name]
    if name in layer_registry.available():
        return Init(name, name, {}, False)
    raise ValueError(f"config.inits has an unknown name {name!r}; known: {sorted(INITS)} and the "
                     f"registered layers {sorted(layer_registry.available())} (a user's variant is "
                     "registered by a module named in config.import_modules)")


def check_grid(config) -> None:
    """Raise ValueError naming a bad ``inits``, ``modes`` or ``seeds`` entry."""
    for name in config.inits:
        init_spec(name)
    bad = [m for m in config.modes if m not in MODES]
    if bad:
        raise ValueError(f"config.modes must be a subset of {MODES}, got {list(config.modes)}")
    if not config.seeds or not all(isinstance(s, int) for s in config.seeds):
        raise ValueError(f"config.seeds must be a non-empty tuple of ints, got {config.seeds!r}")


def grid(config) -> list[tuple[str, str, int]]:
    """The cells (init, mode, seed) in run order: by seed, then init, then mode."""
    return [(i, m, s) for s in config.seeds for i in config.inits for m in config.modes]


def cell_name(init: str, mode: str, seed: int) -> str:
    """The directory name of one cell."""
    return f"{init}-{mode}-seed{seed}"


def cell_config(config, init: str, mode: str, seed: int):
    """The training config of one cell: ``config.train`` with only the layer, its
    ``init`` / ``trainable_A`` and the seed changed."""
    spec = init_spec(init)
    cfg = copy.deepcopy(config.train)
    with cfg.unlocked():
        cfg.import_modules = tuple(config.get("import_modules", ())) + tuple(cfg.get("import_modules", ()))
        cfg.seed = seed
        cfg.model.layer = spec.layer
        cfg.model.layer_kwargs = dict(spec.kwargs, trainable_A=(mode == "trained"))
    return cfg


def initial_model(cfg, task_info):
    """The model as ``train_and_evaluate`` builds it before its first step (same seed)."""
    return models.build_model(cfg.model, task_info, rngs=nnx.Rngs(cfg.seed))


def load_result(cell_dir: str):
    """A finished cell's result dict, or None if the cell has not finished."""
    path = os.path.join(cell_dir, RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_cell(config, init: str, mode: str, seed: int, workdir: str, task_info) -> dict:
    """Train one cell, save the eigenvalues of its initial and final A, return its result.

    The result (also ``result.json``): init, mode, seed, the trainer's summary and
    ``A_change``, the largest change of any A parameter (0 for frozen A).
    """
    import numpy as np

    cfg = cell_config(config, init, mode, seed)
    cell_dir = os.path.join(workdir, cell_name(init, mode, seed))
    before = initial_model(cfg, task_info)
    summary, trained = train_and_evaluate(cfg, cell_dir)
    np.savez(os.path.join(cell_dir, EIGEN_FILE), initial=report.model_eigenvalues(before),
             trained=report.model_eigenvalues(trained))
    result = {"init": init, "mode": mode, "seed": seed, "summary": summary,
              "A_change": report.A_change(before, trained)}
    with open(os.path.join(cell_dir, RESULT_FILE), "w") as f:
        json.dump(result, f, indent=2)
    return result


def run_grid(config, workdir: str) -> list[dict]:
    """Run (or skip, if finished) every cell; log which cell, its result and the ETA."""
    import_user_modules(config.get("import_modules", ()))  # user variants named in config.inits
    import_user_modules(config.train.get("import_modules", ()))
    check_grid(config)
    os.makedirs(workdir, exist_ok=True)
    cells = grid(config)
    todo = [c for c in cells if load_result(os.path.join(workdir, cell_name(*c))) is None]
    logging.info("ablation grid: %d cells (%d inits x %d modes x %d seeds), %d already done, %d to run",
                 len(cells), len(config.inits), len(config.modes), len(config.seeds),
                 len(cells) - len(todo), len(todo))
    task_info = _task_info(config.train) if todo else None
    start, results = time.perf_counter(), []
    for cell in cells:
        done = load_result(os.path.join(workdir, cell_name(*cell)))
        if done is None:
            index = todo.index(cell) + 1
            logging.info("cell %d/%d: %s", index, len(todo), cell_name(*cell))
            done = run_cell(config, *cell, workdir, task_info)
            per_cell = (time.perf_counter() - start) / index
            logging.info("cell %d/%d %s: best eval %.4f, final eval %.4f, A change %.3g; %s elapsed, ETA %s",
                         index, len(todo), cell_name(*cell), done["summary"]["best_eval_accuracy"],
                         done["summary"]["final"]["eval_accuracy"], done["A_change"],
                         progress.format_duration(per_cell * index),
                         progress.format_duration(per_cell * (len(todo) - index)))
        results.append(done)
    return results


def _task_info(train_config) -> dict:
    task = data_lib.get_task(train_config.data.task, data_dir=train_config.data.data_dir,
                             seed=train_config.data.seed, **train_config.data.options.to_dict())
    return task.info


def shared_settings(config) -> str:
    """Markdown prose: what every cell shares and what varies between cells."""
    t = config.train
    m = {k: v for k, v in t.model.to_dict().items() if k not in ("layer", "layer_kwargs", "variant_modules")}
    steps = f"{t.num_steps} steps" if t.num_steps > 0 else f"{t.num_epochs} epochs"
    return "\n".join([
        f"Task `{t.data.task}` with options {t.data.options.to_dict()} (data seed {t.data.seed}).",
        f"Every cell: model {m}; optimizer {t.optim.to_dict()}; batch {t.batch_size}; {steps}; "
        f"eval every {t.eval_every} steps.",
        "Only the SSM layer and its initialization differ between cells (model.layer, "
        "model.layer_kwargs init / trainable_A); seeds "
        f"{list(config.seeds)} change the model init, the random A draws and the data order.",
    ])


def collect_curves(results: list[dict], workdir: str) -> dict:
    """Eval curves per (init, mode): a list of (steps, accuracy) per seed."""
    curves = {}
    for r in results:
        rows = read_metrics(os.path.join(workdir, cell_name(r["init"], r["mode"], r["seed"])))
        curves.setdefault((r["init"], r["mode"]), []).append(report.eval_curve(rows))
    return curves


def collect_spectra(results: list[dict], workdir: str) -> dict:
    """Per init: the initial eigenvalues and, if trained-A cells ran, the trained ones
    (of the lowest seed)."""
    import numpy as np

    spectra = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        entry = spectra.setdefault(r["init"], {})
        eig = np.load(os.path.join(workdir, cell_name(r["init"], r["mode"], r["seed"]), EIGEN_FILE))
        entry.setdefault("initial", eig["initial"])
        if r["mode"] == "trained":
            entry.setdefault("trained", eig["trained"])
    return spectra


def write_report(config, workdir: str, results: list[dict]) -> dict:
    """Aggregate the cells and write the tables, plots and ``ablation.json``."""
    rows = report.aggregate(results, config.inits)
    labels = {name: init_spec(name).label for name in config.inits}
    baseline = results[0]["summary"].get("majority_baseline", {}).get("val")
    paths = report.write_outputs(workdir, rows, collect_curves(results, workdir),
                                 collect_spectra(results, workdir), config.inits, labels=labels,
                                 chance=baseline, header=shared_settings(config))
    with open(os.path.join(workdir, "ablation.json"), "w") as f:
        json.dump({"rows": rows, "cells": results, "settings": shared_settings(config)}, f, indent=2)
    paths["json"] = os.path.join(workdir, "ablation.json")
    return paths


def run(config, workdir: str) -> dict:
    """Run the grid and write the report; returns the output paths."""
    return write_report(config, workdir, run_grid(config, workdir))


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to an ablation config (configs/ablations/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the grid: one subdirectory per cell, tables and plots.")


def main(argv):
    """Run the ablation of ``--config`` in ``--workdir`` and print the table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    progress.quiet_library_logs()
    paths = run(FLAGS.config, FLAGS.workdir)
    with open(paths["markdown"]) as f:
        print(f.read())
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
