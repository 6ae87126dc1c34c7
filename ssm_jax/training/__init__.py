"""Training: optimizer groups, train/eval steps, checkpoints, metrics, sharding, the loop.

The entry point is :func:`train_and_evaluate` (used by ``experiments/train.py`` and by any
script that trains in-process); the pieces are importable on their own.
"""
from ssm_jax.training.checkpoint import Checkpointer, flatten_state, unflatten_state
from ssm_jax.training.config import default_config
from ssm_jax.training.imports import import_module_or_file, import_user_modules
from ssm_jax.training.metrics import MetricWriter, plot_curves, read_metrics
from ssm_jax.training.optim import make_optimizer, make_schedule, param_labels
from ssm_jax.training.progress import Progress
from ssm_jax.training.sharding import check_batch_size, make_mesh, replicate, shard_batch
from ssm_jax.training.steps import (ModelDefs, eval_step, init_train_state, merge_model, split_model,
                                    train_step)
from ssm_jax.training.trainer import evaluate, train_and_evaluate

__all__ = [
    "Checkpointer", "flatten_state", "unflatten_state", "default_config", "import_module_or_file",
    "import_user_modules", "MetricWriter", "plot_curves", "read_metrics", "make_optimizer",
    "make_schedule", "param_labels", "Progress", "check_batch_size", "make_mesh", "replicate",
    "shard_batch", "ModelDefs", "eval_step", "init_train_state", "merge_model", "split_model",
    "train_step", "evaluate", "train_and_evaluate",
]
