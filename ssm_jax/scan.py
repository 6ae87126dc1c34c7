"""First-order linear recurrences, h_t = a_t * h_{t-1} + b_t.

The parallel form uses ``jax.lax.associative_scan`` with the associative operator

    (a_1, b_1) o (a_2, b_2) = (a_2 * a_1, a_2 * b_1 + b_2),

so the whole sequence costs O(log L) depth. ``linear_scan_ref`` is the sequential
``lax.scan`` reference it is tested against; ``linear_scan_chunked`` bounds the memory of
the parallel form by scanning chunk to chunk.

Shapes: ``b`` is (..., L, ...) with the time axis at ``axis``; ``a`` has the same number
of dimensions as ``b`` with every dimension equal to b's or 1 (it broadcasts over b, the
time axis included, so a time-invariant ``a`` can be given with a length-1 time axis).
``h0`` is ``b``'s shape without the time axis. The result has ``b``'s shape and dtype
(promoted with ``a``'s).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssm_jax import _checks

__all__ = ["linear_scan", "linear_scan_ref", "linear_scan_chunked"]


def _binary_op(left, right):
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def _prepare(a, b, axis, h0):
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    _checks.check_float(a, "a", allow_complex=True)
    _checks.check_float(b, "b", allow_complex=True)
    if a.ndim != b.ndim:
        raise ValueError(
            f"a must have the same number of dimensions as b (b has shape {b.shape}); "
            f"got a with shape {a.shape}. Insert size-1 axes where a is constant."
        )
    for i, (sa, sb) in enumerate(zip(a.shape, b.shape)):
        if sa not in (1, sb):
            raise ValueError(
                f"a must broadcast to b's shape {b.shape}: dimension {i} of a is {sa}, expected 1 or {sb}"
            )
    if not -b.ndim <= axis < b.ndim:
        raise ValueError(f"axis must be in [{-b.ndim}, {b.ndim}), got {axis}")
    axis = axis % b.ndim
    dtype = jnp.result_type(a, b)
    a = a.astype(dtype)
    b = b.astype(dtype)
    if h0 is not None:
        h0 = jnp.asarray(h0)
        expected = b.shape[:axis] + b.shape[axis + 1 :]
        _checks.check_shape(h0, "h0", expected)
        h0 = h0.astype(dtype)
    return a, b, axis, h0


def _fold_h0(a, b, axis, h0, reverse):
    """Fold the initial state into the first step: b_first += a_first * h0."""
    if h0 is None:
        return b
    idx = b.shape[axis] - 1 if reverse else 0
    a_first = jax.lax.index_in_dim(a, 0 if a.shape[axis] == 1 else idx, axis, keepdims=False)
    b_first = jax.lax.index_in_dim(b, idx, axis, keepdims=False)
    new_first = a_first * h0 + b_first
    return jax.lax.dynamic_update_index_in_dim(b, new_first, idx, axis)


def linear_scan(a, b, *, axis: int = 0, reverse: bool = False, h0=None):
    """All states of h_t = a_t * h_{t-1} + b_t (h_{-1} = h0, or 0), in parallel.

    With ``reverse=True`` the recurrence runs from the end: h_t = a_t * h_{t+1} + b_t.

    Args:
      a: decay, broadcastable to ``b`` (same ndim, each dim equal or 1).
      b: input, the time axis at ``axis``.
      axis: the time axis.
      reverse: run the recurrence from the last step to the first.
      h0: initial state, ``b``'s shape without the time axis.
    Returns:
      h with ``b``'s shape.
    """
    a, b, axis, h0 = _prepare(a, b, axis, h0)
    a = jnp.broadcast_to(a, b.shape)
    b = _fold_h0(a, b, axis, h0, reverse)
    _, h = jax.lax.associative_scan(_binary_op, (a, b), axis=axis, reverse=reverse)
    return h


def linear_scan_ref(a, b, *, axis: int = 0, reverse: bool = False, h0=None):
    """Sequential reference for :func:`linear_scan` (a ``lax.scan`` over time)."""
    a, b, axis, h0 = _prepare(a, b, axis, h0)
    a = jnp.broadcast_to(a, b.shape)
    a_t = jnp.moveaxis(a, axis, 0)
    b_t = jnp.moveaxis(b, axis, 0)
    h_init = jnp.zeros(b_t.shape[1:], b.dtype) if h0 is None else h0

    def step(h, ab):
        a_i, b_i = ab
        h = a_i * h + b_i
        return h, h

    _, hs = jax.lax.scan(step, h_init, (a_t, b_t), reverse=reverse)
    return jnp.moveaxis(hs, 0, axis)


def linear_scan_chunked(a, b, *, chunk_size: int, axis: int = 0, reverse: bool = False, h0=None):
    """:func:`linear_scan` in chunks of ``chunk_size`` steps: a parallel scan inside each
    chunk, the state carried from chunk to chunk by ``lax.scan``. Same result; the
    associative scan's temporaries are chunk-sized instead of sequence-sized.
    The length need not be a multiple of ``chunk_size`` (the tail is padded with a=1, b=0).
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    a, b, axis, h0 = _prepare(a, b, axis, h0)
    a = jnp.broadcast_to(a, b.shape)
    a_t = jnp.moveaxis(a, axis, 0)
    b_t = jnp.moveaxis(b, axis, 0)
    if reverse:
        a_t, b_t = a_t[::-1], b_t[::-1]
    length = b_t.shape[0]
    n_chunks = -(-length // chunk_size)
    pad = n_chunks * chunk_size - length
    if pad:
        a_t = jnp.concatenate([a_t, jnp.ones((pad,) + a_t.shape[1:], a_t.dtype)])
        b_t = jnp.concatenate([b_t, jnp.zeros((pad,) + b_t.shape[1:], b_t.dtype)])
    a_c = a_t.reshape((n_chunks, chunk_size) + a_t.shape[1:])
    b_c = b_t.reshape((n_chunks, chunk_size) + b_t.shape[1:])
    h_init = jnp.zeros(b_t.shape[1:], b.dtype) if h0 is None else h0

    def chunk(h, ab):
        a_i, b_i = ab
        b_i = b_i.at[0].add(a_i[0] * h)
        _, hs = jax.lax.associative_scan(_binary_op, (a_i, b_i), axis=0)
        return hs[-1], hs

    _, hs = jax.lax.scan(chunk, h_init, (a_c, b_c))
    hs = hs.reshape((n_chunks * chunk_size,) + hs.shape[2:])[:length]
    if reverse:
        hs = hs[::-1]
    return jnp.moveaxis(hs, 0, axis)
