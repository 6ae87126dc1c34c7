"""Discretization of x'(t) = A x(t) + B u(t) with step dt into x_k = A_bar x_{k-1} + B_bar u_k.

Pure ``jax.numpy``: every function works under ``jit``, ``grad`` and ``vmap``.

Rules (all with I the identity; for diagonal A every product is elementwise):

* zero-order hold (ZOH):  A_bar = exp(dt A),
  B_bar = A^{-1} (exp(dt A) - I) B    (diagonal: (exp(dt A) - 1) / A * B);
* bilinear (Tustin):      A_bar = (I - dt/2 A)^{-1} (I + dt/2 A),
  B_bar = (I - dt/2 A)^{-1} dt B;
* forward Euler:          A_bar = I + dt A,  B_bar = dt B.

Shapes
------
Diagonal (``*_diag``): A (..., N) real or complex, B (..., N), broadcasting together
(numpy rules; e.g. A (N,) shared, B (H, N)); ``dt`` is a scalar, or per channel with
their broadcast leading shape, e.g. (H,) for (H, N) (a trailing axis is added), or
already with the trailing axis, (H, 1). The result has the broadcast shape.

Dense (``*_dense``): A (N, N) or per channel (H, N, N); B (N,) or (H, N); dt scalar or
(H,). Returns A_bar (..., N, N), B_bar (..., N) with the broadcast leading shape. Dense
ZOH uses the augmented exponential expm(dt [[A, B], [0, 0]]) = [[A_bar, B_bar], [0, 1]],
which needs no inverse of A.

DPLR (:func:`bilinear_dplr`): A = diag(Lambda) - sum_r P_r Q_r^* (P_r, Q_r column vectors,
^* the conjugate transpose) with Lambda (N2,) or (H, N2); P, Q (H, N2) for rank 1 or
(rank, H, N2); B (H, N2); dt (H,). With ``conj_pairs=True`` (the default, what
``ssm_jax.hippo.dplr`` returns) the arrays hold one of each conjugate pair of a real
system of 2*N2 states and the result is for its conjugate extension
[x, conj(x)] (:func:`conj_extend`): A_bar (H, 2 N2, 2 N2), B_bar (H, 2 N2). The
bilinear inverse is the Woodbury identity, as in S4:

    (2/dt I - A)^{-1} = D - D P^T (I_r + conj(Q) D P^T)^{-1} conj(Q) D,
    D = diag(1 / (2/dt - Lambda)),
    A_bar = (2/dt I - A)^{-1} (2/dt I + A),   B_bar = 2 (2/dt I - A)^{-1} B.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from ssm_jax import _checks

__all__ = [
    "zoh_diag",
    "bilinear_diag",
    "euler_diag",
    "zoh_dense",
    "bilinear_dense",
    "euler_dense",
    "bilinear_dplr",
    "dplr_dense",
    "conj_extend",
    "full_precision",
]


def full_precision(fn):
    """Run ``fn`` with float32 matmuls at full precision (no TF32 / bf16 passes on GPUs).

    The discretizations and kernels are small matrix products whose rounding shows
    directly in the kernel (TF32 costs ~1e-3 relative error on an H100)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


# ----------------------------------------------------------------------------- helpers


def _diag_args(A, B, dt):
    """Validate and broadcast (A, B, dt) for the diagonal rules; dt gets a trailing axis."""
    A, B, dt = jnp.asarray(A), jnp.asarray(B), jnp.asarray(dt)
    _checks.check_float(A, "A", allow_complex=True)
    _checks.check_float(B, "B", allow_complex=True)
    _checks.check_float(dt, "dt")
    dt_shape = dt.shape
    if A.ndim < 1:
        raise ValueError(f"A must have shape (..., N) (at least 1 dim), got shape {A.shape}")
    if B.ndim < 1 or B.shape[-1] != A.shape[-1]:
        raise ValueError(f"B must have shape (..., N) with N = {A.shape[-1]} (A's last dim), got shape {B.shape}")
    try:
        shape = jnp.broadcast_shapes(A.shape, B.shape)
    except ValueError:
        raise ValueError(f"A {A.shape} and B {B.shape} must broadcast together") from None
    if dt.ndim == len(shape) - 1 and dt.ndim > 0:
        dt = dt[..., None]
    elif not (dt.ndim == 0 or (dt.ndim == len(shape) and dt.shape[-1] == 1)):
        raise ValueError(
            f"dt must be a scalar, have shape {shape[:-1]} (the leading shape of A and B) or "
            f"{shape[:-1] + (1,)}; got shape {dt.shape}"
        )
    try:
        shape = jnp.broadcast_shapes(shape, dt.shape)
    except ValueError:
        raise ValueError(
            f"dt must broadcast (with its trailing axis) to A and B's shape {shape}, "
            f"e.g. shape {shape[:-1]}; got shape {dt_shape}"
        ) from None
    dtype = jnp.result_type(A, B, dt)
    return (jnp.broadcast_to(x.astype(dtype), shape) for x in (A, B)), dt.astype(jnp.result_type(dt, A.real))


def _phi1(z):
    """(exp(z) - 1) / z, equal to 1 at z = 0 (safe values and gradients near 0)."""
    small = jnp.abs(z) < 1e-4
    z_safe = jnp.where(small, jnp.ones_like(z), z)
    em1 = jnp.exp(z_safe) - 1 if jnp.iscomplexobj(z) else jnp.expm1(z_safe)
    return jnp.where(small, 1 + z / 2 + z * z / 6, em1 / z_safe)


def _dense_args(A, B, dt):
    """Validate dense (A, B, dt): A (..., N, N), B (..., N), dt () or A's leading shape."""
    A, B, dt = jnp.asarray(A), jnp.asarray(B), jnp.asarray(dt)
    _checks.check_float(A, "A", allow_complex=True)
    _checks.check_float(B, "B", allow_complex=True)
    _checks.check_float(dt, "dt")
    if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must have shape (N, N) or (H, N, N), got shape {A.shape}")
    N = A.shape[-1]
    if B.ndim not in (1, 2) or B.shape[-1] != N:
        raise ValueError(f"B must have shape (N,) or (H, N) with N = {N}, got shape {B.shape}")
    if dt.ndim > 1:
        raise ValueError(f"dt must be a scalar or have shape (H,), got shape {dt.shape}")
    lead = [s for s in (A.shape[:-2], B.shape[:-1], dt.shape) if s]
    if any(s != lead[0] for s in lead):
        raise ValueError(
            f"A {A.shape}, B {B.shape} and dt {dt.shape} must agree on the channel dimension H"
        )
    H = lead[0] if lead else ()
    dtype = jnp.result_type(A, B, dt)
    A = jnp.broadcast_to(A.astype(dtype), H + (N, N))
    B = jnp.broadcast_to(B.astype(dtype), H + (N,))
    dt = jnp.broadcast_to(dt.astype(jnp.result_type(dt, A.real)), H)
    return A, B, dt


# ----------------------------------------------------------------------------- diagonal


@jax.jit
@full_precision
def zoh_diag(A, B, dt):
    """ZOH for diagonal A: A_bar = exp(dt A), B_bar = (exp(dt A) - 1) / A * B.

    Computed as dt B phi(dt A), phi(z) = (e^z - 1)/z, which is finite at A = 0.
    A (..., N), B (..., N), dt scalar / (H,) / (H, 1) (see module docstring).
    Returns A_bar, B_bar of the broadcast shape.
    """
    (A, B), dt = _diag_args(A, B, dt)
    dtA = dt * A
    return jnp.exp(dtA), dt * _phi1(dtA) * B


@jax.jit
@full_precision
def bilinear_diag(A, B, dt):
    """Bilinear for diagonal A: A_bar = (1 + dt/2 A)/(1 - dt/2 A), B_bar = dt B/(1 - dt/2 A).

    A (..., N), B (..., N), dt scalar / (H,) / (H, 1). Returns A_bar, B_bar.
    """
    (A, B), dt = _diag_args(A, B, dt)
    denom = 1 - dt / 2 * A
    return (1 + dt / 2 * A) / denom, dt * B / denom


@jax.jit
@full_precision
def euler_diag(A, B, dt):
    """Forward Euler for diagonal A: A_bar = 1 + dt A, B_bar = dt B.

    A (..., N), B (..., N), dt scalar / (H,) / (H, 1). Returns A_bar, B_bar.
    """
    (A, B), dt = _diag_args(A, B, dt)
    return 1 + dt * A, dt * B


# ----------------------------------------------------------------------------- dense


@jax.jit
@full_precision
def zoh_dense(A, B, dt):
    """ZOH for dense A: A_bar = expm(dt A), B_bar = A^{-1} (expm(dt A) - I) B.

    Both from one exponential of the augmented matrix dt [[A, B], [0, 0]].
    A (N, N) / (H, N, N), B (N,) / (H, N), dt () / (H,). Returns A_bar (.., N, N), B_bar (.., N).
    """
    A, B, dt = _dense_args(A, B, dt)
    N = A.shape[-1]
    top = jnp.concatenate([A, B[..., :, None]], axis=-1)
    M = jnp.concatenate([top, jnp.zeros(top.shape[:-2] + (1, N + 1), top.dtype)], axis=-2)
    E = expm(dt[..., None, None] * M)
    return E[..., :N, :N], E[..., :N, N]


@jax.jit
@full_precision
def bilinear_dense(A, B, dt):
    """Bilinear for dense A: A_bar = (I - dt/2 A)^{-1}(I + dt/2 A), B_bar = (I - dt/2 A)^{-1} dt B.

    A (N, N) / (H, N, N), B (N,) / (H, N), dt () / (H,). Returns A_bar (.., N, N), B_bar (.., N).
    """
    A, B, dt = _dense_args(A, B, dt)
    I = jnp.eye(A.shape[-1], dtype=A.dtype)
    half = (dt / 2)[..., None, None] * A
    rhs = jnp.concatenate([I + half, (dt[..., None] * B)[..., :, None]], axis=-1)
    sol = jnp.linalg.solve(I - half, rhs)
    return sol[..., :-1], sol[..., -1]


@jax.jit
@full_precision
def euler_dense(A, B, dt):
    """Forward Euler for dense A: A_bar = I + dt A, B_bar = dt B.

    A (N, N) / (H, N, N), B (N,) / (H, N), dt () / (H,). Returns A_bar (.., N, N), B_bar (.., N).
    """
    A, B, dt = _dense_args(A, B, dt)
    I = jnp.eye(A.shape[-1], dtype=A.dtype)
    return I + dt[..., None, None] * A, dt[..., None] * B


# ----------------------------------------------------------------------------- DPLR


def conj_extend(x, axis: int = -1):
    """Conjugate extension [x, conj(x)] along ``axis`` (the halved -> full state)."""
    x = jnp.asarray(x)
    return jnp.concatenate([x, jnp.conj(x)], axis=axis)


def _dplr_args(Lambda, P, Q, B, dt):
    """Validate DPLR arguments; returns Lambda (H, N2), P, Q (r, H, N2), B (H, N2), dt (H,)."""
    Lambda, P, Q, B, dt = (jnp.asarray(x) for x in (Lambda, P, Q, B, dt))
    for x, name in ((Lambda, "Lambda"), (P, "P"), (Q, "Q"), (B, "B")):
        _checks.check_float(x, name, allow_complex=True)
    _checks.check_float(dt, "dt")
    _checks.check_shape(B, "B", ("H", "N2"))
    H, N2 = B.shape
    if Lambda.ndim == 1:
        _checks.check_shape(Lambda, "Lambda", (N2,))
        Lambda = jnp.broadcast_to(Lambda, (H, N2))
    else:
        _checks.check_shape(Lambda, "Lambda", (H, N2))
    if P.ndim == 2:
        P = P[None]
    _checks.check_shape(P, "P", ("rank", H, N2))
    if Q.ndim == 2:
        Q = Q[None]
    _checks.check_shape(Q, "Q", (P.shape[0], H, N2))
    _checks.check_shape(dt, "dt", (H,))
    return Lambda, P, Q, B, dt


def _maybe_extend(conj_pairs, *xs):
    return tuple(conj_extend(x) for x in xs) if conj_pairs else xs


@functools.partial(jax.jit, static_argnames=("conj_pairs",))
@full_precision
def dplr_dense(Lambda, P, Q, conj_pairs: bool = True):
    """Dense A = diag(Lambda) - sum_r P_r Q_r^* per channel.

    Lambda (N2,) / (H, N2); P, Q (H, N2) / (rank, H, N2). With ``conj_pairs`` the
    conjugate extension (2 N2 states). Returns A (H, M, M), M = 2 N2 or N2.
    """
    P = jnp.asarray(P)
    H, N2 = P.shape[-2:]
    Lambda, P, Q, _, _ = _dplr_args(Lambda, P, Q, jnp.zeros((H, N2), P.dtype), jnp.ones((H,)))
    Lambda, P, Q = _maybe_extend(conj_pairs, Lambda, P, Q)
    low = jnp.einsum("rhn,rhm->hnm", P, jnp.conj(Q))
    return jax.vmap(jnp.diag)(Lambda) - low


@functools.partial(jax.jit, static_argnames=("conj_pairs",))
@full_precision
def bilinear_dplr(Lambda, P, Q, B, dt, conj_pairs: bool = True):
    """Bilinear discretization of a DPLR system by the Woodbury identity (as S4).

    A = diag(Lambda) - sum_r P_r Q_r^*;  A_bar = (2/dt I - A)^{-1}(2/dt I + A),
    B_bar = 2 (2/dt I - A)^{-1} B, the inverse by Woodbury (module docstring).

    Args:
      Lambda: (N2,) or (H, N2); P, Q: (H, N2) or (rank, H, N2); B: (H, N2); dt: (H,).
      conj_pairs: the arrays are halves of conjugate pairs; discretize the extension.
    Returns:
      A_bar (H, M, M), B_bar (H, M), dense, M = 2 N2 (conj_pairs) or N2.
    """
    Lambda, P, Q, B, dt = _dplr_args(Lambda, P, Q, B, dt)
    Lambda, P, Q, B = _maybe_extend(conj_pairs, Lambda, P, Q, B)
    return jax.vmap(_bilinear_dplr_one, in_axes=(0, 1, 1, 0, 0))(Lambda, P, Q, B, dt)


def _bilinear_dplr_one(Lambda, P, Q, B, dt):
    """One channel: Lambda (M,), P, Q (r, M), B (M,), dt ()."""
    M, r = Lambda.shape[0], P.shape[0]
    two_dt = 2.0 / dt
    D = 1.0 / (two_dt - Lambda)
    Qc = jnp.conj(Q)
    core = jnp.eye(r, dtype=D.dtype) + (Qc * D) @ P.T
    inv = jnp.diag(D) - (D[:, None] * P.T) @ jnp.linalg.solve(core, Qc * D)
    A = jnp.diag(Lambda) - P.T @ Qc
    A_bar = inv @ (two_dt * jnp.eye(M, dtype=A.dtype) + A)
    return A_bar, 2 * inv @ B
