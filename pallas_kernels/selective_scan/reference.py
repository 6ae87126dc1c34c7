"""Plain-JAX reference for the Mamba selective scan (channels-last).

The semantics are those of mamba_ssm's ``selective_scan_ref``, with the time axis second:

    delta' = softplus(delta + delta_bias)          (each optional)
    h_t    = exp(delta'_t * A) * h_{t-1} + (delta'_t * u_t) * B_t      h: (batch, D, N)
    y_t    = sum_n h_t[:, :, n] * C_t[:, n]  +  D * u_t
    out_t  = y_t * silu(z_t)                       (if z is given)

Shapes: u, delta, z (batch, L, D); A (D, N); B, C (batch, L, N) or grouped
(batch, L, G, N) with channel d reading group d // (D // G); D, delta_bias (D,).
The state and all arithmetic are float32; the output has u's dtype. The last state,
when asked for, is (batch, D, N) float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["selective_scan_ref", "prepare_delta", "as_grouped"]


def prepare_delta(delta, delta_bias=None, delta_softplus=False):
    """float32 delta with the optional bias added and softplus applied."""
    delta = delta.astype(jnp.float32)
    if delta_bias is not None:
        delta = delta + delta_bias.astype(jnp.float32)
    if delta_softplus:
        delta = jax.nn.softplus(delta)
    return delta


def as_grouped(x):
    """B or C as float32 (batch, L, G, N): an ungrouped (batch, L, N) becomes G = 1."""
    x = x.astype(jnp.float32)
    return x[:, :, None, :] if x.ndim == 3 else x


def finish_output(y, u, D=None, z=None, out_dtype=None):
    """y + D*u, gated by silu(z), cast to ``out_dtype``; y, u: (batch, L, D)."""
    out_dtype = u.dtype if out_dtype is None else out_dtype
    if D is not None:
        y = y + u.astype(jnp.float32) * D.astype(jnp.float32)
    if z is not None:
        y = y * jax.nn.silu(z.astype(jnp.float32))
    return y.astype(out_dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                       delta_softplus=False, return_last_state=False):
    """Sequential (``lax.scan`` over time) selective scan; see the module docstring."""
    batch, _, dim = u.shape
    n_state = A.shape[1]
    delta = prepare_delta(delta, delta_bias, delta_softplus)
    u32 = u.astype(jnp.float32)
    A = A.astype(jnp.float32)
    Bg, Cg = as_grouped(B), as_grouped(C)
    groups = Bg.shape[2]

    def step(h, xs):
        u_t, d_t, B_t, C_t = xs                       # (b, D), (b, D), (b, G, N), (b, G, N)
        dA = jnp.exp(d_t[:, :, None] * A)             # (b, D, N)
        hg = (dA * h).reshape(batch, groups, dim // groups, n_state)
        dBu = (d_t * u_t).reshape(batch, groups, dim // groups, 1) * B_t[:, :, None, :]
        hg = hg + dBu
        y = jnp.sum(hg * C_t[:, :, None, :], axis=-1).reshape(batch, dim)
        return hg.reshape(batch, dim, n_state), y

    xs = tuple(jnp.moveaxis(x, 1, 0) for x in (u32, delta, Bg, Cg))
    h0 = jnp.zeros((batch, dim, n_state), jnp.float32)
    last, ys = jax.lax.scan(step, h0, xs)
    out = finish_output(jnp.moveaxis(ys, 0, 1), u, D, z)
    return (out, last) if return_last_state else out
