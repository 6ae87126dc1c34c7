"""Small pieces shared by the layers: parameter kinds, dt initialization, complex storage.

Parameter kinds (how an optimizer tells them apart, by type):

* :class:`~ssm_jax.layers.params.SSMParam` (an ``nnx.Param``): trainable SSM parameters
  (A, B, C, dt and the skip D); their own learning rate, no weight decay.
* :class:`FrozenSSMVariable` (an ``nnx.Variable`` that is *not* an ``nnx.Param``): an SSM
  parameter held fixed (``trainable_A=False``). Optimizers built on ``nnx.Param`` skip it.
* ``nnx.Param``: every other weight (projections, norms, embeddings).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssm_jax import _checks
from ssm_jax.layers.params import SSMParam

__all__ = [
    "FrozenSSMVariable",
    "ssm_variable",
    "log_uniform_dt",
    "inverse_softplus",
    "as_complex",
    "check_n_ssm",
    "per_channel",
    "as_real_pair",
    "seed_from_key",
    "read",
    "variant_variables",
    "check_sequence",
    "check_step",
]


class FrozenSSMVariable(nnx.Variable):
    """An SSM parameter kept fixed during training (not an ``nnx.Param``)."""


def ssm_variable(value, *, trainable: bool = True) -> nnx.Variable:
    """``SSMParam(value)`` if trainable, else ``FrozenSSMVariable(value)``."""
    return SSMParam(value) if trainable else FrozenSSMVariable(value)


def variant_variables(variant, params: dict, trainable_A: bool = True) -> nnx.Dict:
    """A variant's params as variables: ``nnx.Param`` for ``variant.weight_keys``,
    ``FrozenSSMVariable`` for ``variant.A_keys`` when not ``trainable_A``, else ``SSMParam``."""
    return nnx.Dict({
        k: nnx.Param(v) if k in variant.weight_keys
        else ssm_variable(v, trainable=trainable_A or k not in variant.A_keys)
        for k, v in params.items()})


def read(variables) -> dict:
    """The arrays held by a mapping of name -> ``nnx.Variable`` (a plain dict)."""
    return {name: var[...] for name, var in variables.items()}


def log_uniform_dt(key, shape, dt_min: float, dt_max: float):
    """Step sizes dt ~ exp(U[log dt_min, log dt_max]) (S4 and Mamba), float32 of ``shape``."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    u = jax.random.uniform(key, shape, jnp.float32)
    return jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))


def inverse_softplus(y):
    """x with softplus(x) = y, for y > 0: x = y + log(-expm1(-y))."""
    return y + jnp.log(-jnp.expm1(-y))


def check_n_ssm(n_ssm, d_model: int) -> int:
    """The number of independent (A, B) copies: ``d_model`` for None, else a divisor of it."""
    n = d_model if n_ssm is None else n_ssm
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or d_model % n:
        raise ValueError(f"n_ssm must be None or a positive int dividing d_model={d_model}, got {n_ssm!r}")
    return n


def per_channel(x, H: int, axis: int = 0):
    """Repeat n_ssm copies along ``axis`` to H channels, each copy serving H / n_ssm in a row."""
    return jnp.repeat(x, H // x.shape[axis], axis=axis)


def as_complex(x):
    """(..., 2) real -> (...) complex: x[..., 0] + i x[..., 1]."""
    return jax.lax.complex(x[..., 0], x[..., 1])


def as_real_pair(z):
    """(...) complex -> (..., 2) float32 real and imaginary parts (the stored form)."""
    z = jnp.asarray(z)
    return jnp.stack([z.real, z.imag], axis=-1).astype(jnp.float32)


def seed_from_key(key) -> int:
    """A numpy seed drawn from a JAX key (for the numpy initializers of ``ssm_jax.hippo``)."""
    return int(np.asarray(jax.random.randint(key, (), 0, 2**31 - 1)))


def check_sequence(u, d_model: int) -> None:
    """A layer's whole-sequence input: float (batch, L, d_model)."""
    _checks.check_float(u, "u")
    _checks.check_shape(u, "u", ("batch", "L", d_model))


def check_step(layer, state_shape, state, u_t) -> None:
    """A layer's step input: u_t float (batch, d_model), state (batch,) + state_shape; a
    bidirectional layer cannot step."""
    if getattr(layer, "bidirectional", False):
        raise ValueError("a bidirectional layer has no recurrent step (it looks at the future); "
                         "build it with bidirectional=False to use step")
    _checks.check_float(u_t, "u_t")
    _checks.check_shape(u_t, "u_t", ("batch", layer.d_model))
    _checks.check_shape(state, "state", (u_t.shape[0],) + tuple(state_shape))
