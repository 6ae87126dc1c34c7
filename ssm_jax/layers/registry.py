"""Layers by name, so a config can pick one: ``--config.model.layer=s4d``.

``register(name, x)`` takes a variant (:class:`~ssm_jax.layers.variants.DiagonalSSM` or
:class:`~ssm_jax.layers.variants.SelectiveSSM`, wrapped in its generic layer) or a layer
factory: any callable ``factory(d_model, *, rngs, **kwargs) -> nnx.Module`` (a layer
class is one). ``make_layer(name, d_model, rngs=..., **kwargs)`` builds it.
"""
from __future__ import annotations

import functools
from typing import Callable

from ssm_jax.layers.variants import DiagonalSSM, SelectiveSSM

__all__ = ["register", "get", "available", "make_layer"]

_REGISTRY: dict[str, Callable] = {}
_SOURCES: dict[str, object] = {}


def _layer_factory(x) -> Callable:
    if isinstance(x, DiagonalSSM):
        from ssm_jax.layers.diagonal import DiagonalLayer

        return functools.partial(DiagonalLayer, x)
    if isinstance(x, SelectiveSSM):
        from ssm_jax.layers.selective import SelectiveLayer

        return functools.partial(SelectiveLayer, x)
    if callable(x):
        return x
    raise TypeError(
        "register expects a DiagonalSSM, a SelectiveSSM or a layer factory "
        f"(d_model, *, rngs, **kwargs) -> nnx.Module; got {type(x).__name__}")


def register(name: str, variant_or_factory, *, overwrite: bool = False):
    """Register a variant or layer factory under ``name``; returns it (usable as a decorator
    on a factory). Registering a different object under a taken name needs ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    factory = _layer_factory(variant_or_factory)
    if name in _REGISTRY and _SOURCES[name] is not variant_or_factory and not overwrite:
        raise ValueError(f"a layer named {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name], _SOURCES[name] = factory, variant_or_factory
    return variant_or_factory


def get(name: str) -> Callable:
    """The layer factory registered as ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"no layer named {name!r}; available: {available()}")
    return _REGISTRY[name]


def available() -> list[str]:
    """Registered layer names, sorted."""
    return sorted(_REGISTRY)


def make_layer(name: str, d_model: int, *, rngs, **kwargs):
    """Build the layer registered as ``name``: ``factory(d_model, rngs=rngs, **kwargs)``."""
    return get(name)(d_model, rngs=rngs, **kwargs)
