"""Optimizer: AdamW with linear warmup and cosine decay, and a separate SSM group.

The state space parameters (:class:`ssm_jax.layers.params.SSMParam`: A, B, C, dt) train
with their own learning rate (``optim.ssm_lr``) and no weight decay, as in the S4 and S5
papers; every other ``nnx.Param`` trains with ``optim.lr`` and ``optim.weight_decay``.
Parameters are labelled by their type and the two groups are combined with
``optax.partition`` (``optax.multi_transform`` in older optax).
"""
from __future__ import annotations

import jax
import optax
from flax import nnx

from ssm_jax.layers.params import SSMParam

SSM_GROUP = "ssm"
DEFAULT_GROUP = "default"
OPTIM_FIELDS = ("lr", "ssm_lr", "weight_decay", "ssm_weight_decay", "warmup_steps",
                "end_lr_fraction", "grad_clip", "b1", "b2", "eps")

_partition = getattr(optax, "partition", None) or optax.multi_transform


def param_labels(params):
    """Label each parameter of an ``nnx.State`` "ssm" (an SSMParam) or "default"."""
    def label(v):
        return SSM_GROUP if isinstance(v, SSMParam) else DEFAULT_GROUP
    return jax.tree_util.tree_map(label, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_schedule(peak_lr: float, warmup_steps: int, total_steps: int,
                  end_fraction: float = 0.0) -> optax.Schedule:
    """Linear warmup from 0 to ``peak_lr`` over ``warmup_steps``, then cosine decay to
    ``end_fraction * peak_lr`` at ``total_steps``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}")
    if peak_lr < 0:
        raise ValueError(f"learning rate must be >= 0, got {peak_lr}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=end_fraction * peak_lr)


def group_schedules(cfg, total_steps: int) -> dict:
    """The learning-rate schedule of each group: {"default": ..., "ssm": ...}."""
    return {DEFAULT_GROUP: make_schedule(cfg.lr, cfg.warmup_steps, total_steps, cfg.end_lr_fraction),
            SSM_GROUP: make_schedule(cfg.ssm_lr, cfg.warmup_steps, total_steps, cfg.end_lr_fraction)}


def _adamw(schedule, weight_decay: float, cfg) -> optax.GradientTransformation:
    return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=weight_decay)


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
    """Build the optimizer from an ``optim`` config group (see :data:`OPTIM_FIELDS`).

    Gradients are clipped to global norm ``grad_clip`` (0 disables clipping) before the
    per-group AdamW. Apply it to an ``nnx.State`` of ``nnx.Param`` values.
    """
    missing = [f for f in OPTIM_FIELDS if f not in cfg]
    if missing:
        raise ValueError(f"optim config is missing fields {missing}; expected all of {list(OPTIM_FIELDS)}")
    if not 0 <= cfg.warmup_steps < total_steps:
        raise ValueError(f"optim.warmup_steps must be in [0, number of training steps = {total_steps}), "
                         f"got {cfg.warmup_steps}")
    if cfg.grad_clip < 0:
        raise ValueError(f"optim.grad_clip must be >= 0 (0 disables clipping), got {cfg.grad_clip}")
    schedules = group_schedules(cfg, total_steps)
    groups = {
        DEFAULT_GROUP: _adamw(schedules[DEFAULT_GROUP], cfg.weight_decay, cfg),
        SSM_GROUP: _adamw(schedules[SSM_GROUP], cfg.ssm_weight_decay, cfg),
    }
    tx = _partition(groups, param_labels)
    if cfg.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    return tx
