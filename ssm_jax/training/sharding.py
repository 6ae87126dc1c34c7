"""Data parallelism with ``jax.sharding``: a 1-D mesh over the local devices.

The batch is split on its first axis across the mesh axis ``"data"``; the train state
(parameters, optimizer state) is replicated on every device. ``jit`` inserts the gradient
all-reduce, so the step is the same function on one device or many.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh needs at least one device")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that places a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the first axis across the devices of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    """Raise ValueError unless ``batch_size`` is a positive multiple of the device count."""
    n = mesh.devices.size
    if batch_size < 1 or batch_size % n:
        raise ValueError(f"{name} must be a positive multiple of the number of devices ({n}) "
                         f"for data parallelism, got {batch_size}")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Put a dict of host arrays on the devices, split along the first (batch) axis."""
    return jax.device_put(batch, batch_sharded(mesh))


def replicate(tree, mesh: Mesh):
    """Put a pytree on every device of ``mesh`` (a full copy each)."""
    return jax.device_put(tree, replicated(mesh))
