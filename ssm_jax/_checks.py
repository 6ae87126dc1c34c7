"""Input validation shared by the public functions.

Every check raises before any device work, with a message that names the argument,
the shape or dtype it expected and what it got. Nothing broadcasts silently.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np


def _shape_str(shape: Sequence[object]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_shape(x, name: str, expected: Sequence[object]) -> None:
    """Raise ValueError unless ``x.shape`` matches ``expected``.

    ``expected`` holds ints (must match) or strings (names of free dimensions, used in
    the message; equal names must be equal sizes).
    """
    shape = tuple(np.shape(x))
    if len(shape) != len(expected):
        raise ValueError(
            f"{name} must have shape {_shape_str(expected)} ({len(expected)} dims), "
            f"got shape {_shape_str(shape)}"
        )
    bound: dict[str, int] = {}
    for got, want in zip(shape, expected):
        if isinstance(want, str):
            if want in bound and bound[want] != got:
                raise ValueError(
                    f"{name} must have shape {_shape_str(expected)}, got {_shape_str(shape)} "
                    f"(dimension {want!r} is {bound[want]} in one place and {got} in another)"
                )
            bound[want] = got
        elif got != want:
            raise ValueError(f"{name} must have shape {_shape_str(expected)}, got {_shape_str(shape)}")


def check_float(x, name: str, allow_complex: bool = False) -> None:
    """Raise TypeError unless ``x`` has a floating (or, if allowed, complex) dtype."""
    dt = jnp.result_type(x)
    ok = jnp.issubdtype(dt, jnp.floating) or (allow_complex and jnp.issubdtype(dt, jnp.complexfloating))
    if not ok:
        kinds = "floating or complex" if allow_complex else "floating"
        raise TypeError(f"{name} must have a {kinds} dtype (float32, bfloat16, ...), got {dt}")


def check_int(x, name: str) -> None:
    """Raise TypeError unless ``x`` has an integer dtype."""
    dt = jnp.result_type(x)
    if not jnp.issubdtype(dt, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype, got {dt}")


def check_choice(value, name: str, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
