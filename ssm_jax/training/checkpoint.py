"""Checkpoints with orbax ``CheckpointManager``: the train state plus a JSON record.

The train state is stored as a flat dict ``{"params.layers.0.A.value": array, ...}`` (its
pytree paths), with typed PRNG keys stored as their raw key data, so a checkpoint does not
depend on how a Flax version registers ``nnx.State`` as a pytree. Restoring needs a
template state of the same structure (the freshly initialized one) and puts the restored
arrays on the template's shardings. The JSON record carries the data position (epoch,
batch index) and the run's bookkeeping (best eval accuracy so far).
"""
from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _is_prng_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(state) -> dict:
    """A flat ``{path: array}`` dict of a pytree; PRNG keys become their uint32 key data."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = ".".join(_key_name(k) for k in path)
        if name in flat:
            raise ValueError(f"two leaves of the train state share the checkpoint name {name!r}")
        flat[name] = jax.random.key_data(leaf) if _is_prng_key(leaf) else leaf
    return flat


def unflatten_state(flat: dict, template):
    """Inverse of :func:`flatten_state`, shaped (and keyed) like ``template``."""
    expected = flatten_state(template)
    if set(flat) != set(expected):
        missing, extra = sorted(set(expected) - set(flat)), sorted(set(flat) - set(expected))
        raise ValueError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    restored = []
    for name, like in zip(expected, leaves):
        value = flat[name]
        if _is_prng_key(like):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
        restored.append(value)
    return jax.tree_util.tree_unflatten(treedef, restored)


def _abstract(flat: dict) -> dict:
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=getattr(v, "sharding", None))
            for k, v in flat.items()}


class Checkpointer:
    """Saves every ``every`` steps (and on request), keeps the last ``keep``, restores the latest."""

    def __init__(self, directory: str, *, every: int, keep: int):
        if every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {every}")
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.every = every
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state, record: dict, *, force: bool = False) -> bool:
        """Save when ``step`` is a multiple of ``every`` (or ``force``); True if saved."""
        if not force and step % self.every:
            return False
        if step in self.manager.all_steps():
            return False
        # The save finishes in a background thread while training goes on and mutates
        # ``record`` (step, data position): save a snapshot of it, as of this step.
        args = ocp.args.Composite(state=ocp.args.StandardSave(flatten_state(state)),
                                  record=ocp.args.JsonSave(copy.deepcopy(record)))
        return bool(self.manager.save(step, args=args, force=True))

    def restore(self, template, step: int | None = None):
        """Restore (state, record) of ``step`` (default: latest) into ``template``'s structure."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(flatten_state(template))),
                                  record=ocp.args.JsonRestore())
        restored = self.manager.restore(step, args=args)
        return unflatten_state(dict(restored["state"]), template), dict(restored["record"])

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
