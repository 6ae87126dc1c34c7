"""Random inputs and error measures shared by the selective-scan tests and benchmarks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["random_inputs", "rel_err", "ARG_NAMES"]

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def random_inputs(key, batch, length, dim, n_state, groups=None, dtype=jnp.float32,
                  with_D=True, with_z=True, with_bias=True, for_softplus=True):
    """Random (u, delta, A, B, C, D, z, delta_bias) in the Mamba ranges, never zeros.

    u, z ~ N(0, 1) (batch, L, D); delta ~ 0.5 N(0, 1) - 1 (raw, before softplus) or, with
    ``for_softplus=False``, a positive step exp(0.5 N(0, 1) - 3) (a stable system without
    softplus: a negative delta times a negative A grows without bound);
    A = -exp(N(0, 1)) (D, N) float32; B, C ~ N(0, 1) (batch, L[, G], N); D ~ N(0, 1) and
    delta_bias ~ 0.1 N(0, 1) (D,) float32. Optional ones are None when not asked for.
    """
    ks = jax.random.split(key, 8)
    bc = (batch, length, n_state) if groups is None else (batch, length, groups, n_state)
    u = jax.random.normal(ks[0], (batch, length, dim), jnp.float32).astype(dtype)
    delta = 0.5 * jax.random.normal(ks[1], (batch, length, dim)) - (1.0 if for_softplus else 3.0)
    delta = (delta if for_softplus else jnp.exp(delta)).astype(dtype)
    A = -jnp.exp(jax.random.normal(ks[2], (dim, n_state)))
    B = jax.random.normal(ks[3], bc).astype(dtype)
    C = jax.random.normal(ks[4], bc).astype(dtype)
    D = jax.random.normal(ks[5], (dim,)) if with_D else None
    z = jax.random.normal(ks[6], (batch, length, dim)).astype(dtype) if with_z else None
    bias = 0.1 * jax.random.normal(ks[7], (dim,)) if with_bias else None
    return u, delta, A, B, C, D, z, bias


def rel_err(x, ref):
    """||x - ref|| / ||ref|| in float64 (0 when both are 0)."""
    x = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    ref = np.asarray(jnp.asarray(ref, jnp.float32), np.float64)
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / den) if den else float(np.linalg.norm(x))
