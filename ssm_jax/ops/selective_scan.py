"""The Mamba selective scan: one entry point, several backends.

    h_t = exp(delta_t * A) * h_{t-1} + (delta_t * u_t) * B_t,   y_t = C_t . h_t + D * u_t,
    out_t = y_t * silu(z_t)

(with delta = softplus(delta + delta_bias) when asked), the semantics of mamba_ssm's
``selective_scan_ref`` in channels-last layout. See
:mod:`pallas_kernels.selective_scan.reference` for the sequential reference.

Backends:
  ``"xla"``     ``jax.lax.associative_scan`` over time with a float32 state; materializes
                the (batch, L, D, N) decays, so memory is O(batch*L*D*N).
  ``"pallas"``  the fused Pallas kernel (forward and backward); memory linear in L: the
                state before every chunk of T = 4-8 steps, O(batch*L*D*N/T).
  ``"auto"``    ``"pallas"`` on GPU, ``"xla"`` elsewhere.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.selective_scan.reference import (
    as_grouped, finish_output, prepare_delta, selective_scan_ref)
from ssm_jax import _checks
from ssm_jax.scan import linear_scan

__all__ = ["selective_scan", "selective_scan_ref", "check_selective_scan_args", "BACKENDS"]

BACKENDS = ("auto", "xla", "pallas")


def check_selective_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None):
    """Validate shapes and dtypes; raise naming the argument. Returns (batch, L, dim, N, G)."""
    for name, x in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        _checks.check_float(x, name)
    if u.ndim != 3:
        raise ValueError(f"u must have shape (batch, L, D), got shape {tuple(u.shape)}")
    batch, length, dim = u.shape
    _checks.check_shape(delta, "delta", (batch, length, dim))
    if A.ndim != 2 or A.shape[0] != dim:
        raise ValueError(f"A must have shape (D={dim}, N), got shape {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, x in (("B", B), ("C", C)):
        if x.ndim == 3:
            _checks.check_shape(x, name, (batch, length, n_state))
        elif x.ndim == 4:
            _checks.check_shape(x, name, (batch, length, "G", n_state))
            if dim % x.shape[2]:
                raise ValueError(f"{name} has G={x.shape[2]} groups, which must divide D={dim}")
        else:
            raise ValueError(
                f"{name} must have shape (batch, L, N) = ({batch}, {length}, {n_state}) or "
                f"(batch, L, G, N), got shape {tuple(x.shape)}")
    groups = _num_groups(B)
    if _num_groups(C) != groups:
        raise ValueError(f"B and C must have the same number of groups, got B {tuple(B.shape)} "
                         f"and C {tuple(C.shape)}")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None:
            _checks.check_float(x, name)
            _checks.check_shape(x, name, (dim,))
    if z is not None:
        _checks.check_float(z, "z")
        _checks.check_shape(z, "z", (batch, length, dim))
    return batch, length, dim, n_state, groups


def _num_groups(x):
    return 1 if x.ndim == 3 else x.shape[2]


def _selective_scan_xla(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    batch, length, dim = u.shape
    n_state = A.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    Bg, Cg = as_grouped(B), as_grouped(C)
    groups = Bg.shape[2]
    dA = jnp.exp(delta[..., None] * A.astype(jnp.float32))            # (b, L, D, N)
    dBu = ((delta * u.astype(jnp.float32)).reshape(batch, length, groups, dim // groups, 1)
           * Bg[:, :, :, None, :]).reshape(batch, length, dim, n_state)
    h = linear_scan(dA, dBu, axis=1)                                    # (b, L, D, N)
    y = jnp.sum(h.reshape(batch, length, groups, dim // groups, n_state) * Cg[:, :, :, None, :],
                axis=-1).reshape(batch, length, dim)
    out = finish_output(y, u, D, z)
    return (out, h[:, -1]) if return_last_state else out


def _default_backend():
    return "pallas" if jax.default_backend() == "gpu" else "xla"


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, *,
                   backend: str = "auto", return_last_state: bool = False,
                   pallas_options=None):
    """Selective scan (see the module docstring for the equations).

    Args:
      u, delta: (batch, L, D), float32 or bfloat16.
      A: (D, N) float, real (negative for a stable system).
      B, C: (batch, L, N), or grouped (batch, L, G, N) with G dividing D.
      D: optional (D,) skip connection.
      z: optional (batch, L, D) gate; the output is multiplied by silu(z).
      delta_bias: optional (D,) added to delta before the softplus.
      delta_softplus: apply softplus to delta.
      backend: "auto", "xla" or "pallas".
      return_last_state: also return the final state h_L, (batch, D, N) float32.
      pallas_options: keyword arguments for the fused kernel where the backend is
        "pallas" (``selective_scan_pallas``'s layout options, e.g. ``state_every`` to keep
        fewer saved states, or ``interpret``); a dict or (name, value) pairs. Not used by
        "xla".
    Returns:
      out (batch, L, D) in u's dtype, and the last state if asked.
    """
    _checks.check_choice(backend, "backend", BACKENDS)
    check_selective_scan_args(u, delta, A, B, C, D, z, delta_bias)
    if backend == "auto":
        backend = _default_backend()
    if backend == "pallas":
        from pallas_kernels.selective_scan import selective_scan_pallas
        return selective_scan_pallas(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                     return_last_state=return_last_state,
                                     **dict(pallas_options or {}))
    return _selective_scan_xla(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                               return_last_state)
