"""Pure functional train and eval steps over a split ``nnx`` model.

A model is split once into static graph definitions (one in train mode, one in eval
mode: dropout and batch norm read a static flag) and a train state, a plain dict pytree::

    {"params": nnx.State of nnx.Param (trained),
     "rest":   nnx.State of everything else (frozen variables, batch statistics, RNG state),
     "opt_state": optax state, "step": int32 scalar}

The steps take and return that dict, so they jit, shard and checkpoint like any pytree.
Parameters that are not ``nnx.Param`` (frozen ones) sit in ``rest`` and are not trained.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


class ModelDefs(NamedTuple):
    """Static graph definitions of one model in train and in eval mode."""
    train: nnx.GraphDef
    eval: nnx.GraphDef


def split_model(model: nnx.Module):
    """Split ``model`` into :class:`ModelDefs`, its ``nnx.Param`` state and the rest."""
    model.eval()
    eval_def, _, _ = nnx.split(model, nnx.Param, ...)
    model.train()
    train_def, params, rest = nnx.split(model, nnx.Param, ...)
    return ModelDefs(train_def, eval_def), params, rest


def merge_model(defs: ModelDefs, state: dict, train: bool = False) -> nnx.Module:
    """Rebuild a module from :class:`ModelDefs` and a train state (eval mode by default)."""
    return nnx.merge(defs.train if train else defs.eval, state["params"], state["rest"])


def init_train_state(params, rest, tx: optax.GradientTransformation) -> dict:
    """The train state dict at step 0."""
    return {"params": params, "rest": rest, "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32)}


def classification_loss(logits, labels):
    """Per-example cross entropy and correctness for integer labels."""
    if logits.ndim != 2:
        raise ValueError(f"model output (logits) must have shape (batch, num_classes), got {logits.shape}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return loss, correct


def _descent_direction(grads):
    # jax.grad of a real loss w.r.t. a complex parameter is the conjugate of the steepest
    # ascent direction; conjugate it so that optax's update descends.
    return jax.tree_util.tree_map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grads)


def _fresh(tree):
    # New Variable objects created at the current trace level: merging the state's own
    # Variables inside jax.grad would make stateful layers (dropout RNG counters, batch
    # statistics) mutate a Variable from an outer trace, which nnx forbids.
    return jax.tree_util.tree_map(lambda x: x, tree)


def train_step(defs: ModelDefs, tx: optax.GradientTransformation, state: dict, batch: dict):
    """One optimizer step on ``batch`` (``inputs``, ``labels``); returns (state, metrics).

    Jit it with ``defs`` and ``tx`` bound (``functools.partial``); ``metrics`` holds the
    batch mean ``loss`` and ``accuracy`` and the global gradient norm ``grad_norm``.
    """
    def loss_fn(params):
        model = nnx.merge(defs.train, params, _fresh(state["rest"]))
        logits = model(batch["inputs"])
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        loss, correct = classification_loss(logits, batch["labels"])
        return loss.mean(), (new_rest, correct.mean())

    (loss, (rest, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    grads = _descent_direction(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"params": params, "rest": rest, "opt_state": opt_state, "step": state["step"] + 1}
    metrics = {"loss": loss, "accuracy": acc, "grad_norm": optax.global_norm(grads)}
    return new_state, metrics


def eval_step(defs: ModelDefs, state: dict, batch: dict):
    """Sums over the real examples of ``batch`` (``mask`` marks them): loss, correct, count."""
    model = nnx.merge(defs.eval, state["params"], state["rest"])
    loss, correct = classification_loss(model(batch["inputs"]), batch["labels"])
    mask = batch["mask"].astype(jnp.float32)
    return {"loss": jnp.sum(loss * mask), "correct": jnp.sum(correct * mask), "count": jnp.sum(mask)}
