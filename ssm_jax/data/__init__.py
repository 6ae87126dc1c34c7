"""Data for ssm-jax: Long Range Arena tasks and synthetic long-memory tasks, as numpy arrays.

    task = ssm_jax.data.get_task("listops", num_train=2000, min_length=50, max_length=200)
    for x, y in ssm_jax.data.batches(task.splits["train"], 32, seed=0, epoch=0):
        ...

`get_task(name, *, data_dir=None, seed=0, **options) -> Task` with names:

| name              | inputs                           | classes | source                                   |
|-------------------|----------------------------------|---------|------------------------------------------|
| "listops"         | uint8 tokens (n, L), L=2000      | 10      | official TSVs, or our generator          |
| "pathfinder32"    | uint8 pixels (n, 1024)           | 2       | official folders, or our generator       |
| "pathfinder64"    | uint8 pixels (n, 4096)           | 2       | official folders, or our generator       |
| "pathfinder128"   | uint8 pixels (n, 16384) (Path-X) | 2       | official folders, or our generator       |
| "text"            | int16 bytes+1 (n, 4096)          | 2       | aclImdb/                                 |
| "retrieval"       | int16 bytes+1 (n, 2, 4000), dual | 2       | new_aan_pairs.{train,eval,test}.tsv      |
| "image"           | uint8 gray (n, 1024)             | 10      | cifar-10-batches-py/                     |
| "delayed_sum"     | uint8 tokens (n, L)              | K       | generated (long-memory ablation task)    |

("pathx" is an alias of "pathfinder128".) Pixel tasks take ``as_float=True`` for float32
(n, L, 1) inputs normalized as in S4. Per-task conventions, options and file layouts are
in each module's docstring (`ssm_jax.data.lra.listops`, ...) and in docs/data.md.

`batches(split, batch_size, *, seed, epoch=0, shuffle=True, drop_remainder=True,
start_batch=0)` yields (inputs, labels) numpy batches, deterministic given (seed, epoch)
and resumable mid-epoch with ``start_batch``.

Data knows nothing of models: nothing here imports ssm_jax.layers or ssm_jax.models.
"""
from __future__ import annotations

import importlib
import inspect

from ssm_jax.data.core import Split, Task, batches, epoch_order, majority_baseline, num_batches

__all__ = ["get_task", "batches", "num_batches", "epoch_order", "majority_baseline", "Split", "Task",
           "TASK_NAMES"]

# name -> (module, fixed keyword arguments of its ``load``)
_REGISTRY = {
    "listops": ("ssm_jax.data.lra.listops", {}),
    "pathfinder32": ("ssm_jax.data.lra.pathfinder", {"resolution": 32}),
    "pathfinder64": ("ssm_jax.data.lra.pathfinder", {"resolution": 64}),
    "pathfinder128": ("ssm_jax.data.lra.pathfinder", {"resolution": 128}),
    "text": ("ssm_jax.data.lra.text", {}),
    "retrieval": ("ssm_jax.data.lra.retrieval", {}),
    "image": ("ssm_jax.data.lra.image", {}),
    "delayed_sum": ("ssm_jax.data.synthetic", {}),
}
_ALIASES = {"pathx": "pathfinder128", "path-x": "pathfinder128", "cifar": "image", "imdb": "text",
            "aan": "retrieval"}
TASK_NAMES = tuple(_REGISTRY)


def get_task(name: str, *, data_dir=None, seed: int = 0, **options) -> Task:
    """Load (or generate) the task ``name`` as numpy splits; see the module docstring.

    ``data_dir``: where the official files are (or, for generated tasks, where to cache
    them). ``seed``: fixes generated data and any random split. ``options``: task
    specific (e.g. ``as_float``, ``num_train``, ``max_length``); unknown options raise.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a task name string, got {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        raise ValueError(f"name must be one of {sorted(_REGISTRY)} (aliases {sorted(_ALIASES)}), got {name!r}")
    module_name, fixed = _REGISTRY[key]
    loader = importlib.import_module(module_name).load
    accepted = [p for p in inspect.signature(loader).parameters if p not in fixed]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"get_task({name!r}): unknown option(s) {unknown}; accepted: {accepted}")
    return loader(data_dir=data_dir, seed=seed, **fixed, **options)
