"""SSM convolution kernels and FFT convolution.

A discrete SSM x_k = A_bar x_{k-1} + B_bar u_k, y_k = C x_k (x_{-1} = 0) is the causal
convolution y = K * u with the kernel

    K_k = C A_bar^k B_bar,   k = 0 .. L-1,

one kernel per channel, returned channels-last as K (L, H). Pure ``jax.numpy``: every
function works under ``jit``, ``grad`` and ``vmap``; each fast form has a ``*_ref`` beside
it that materializes A_bar^k step by step (or convolves directly), for the tests.

Conjugate pairs (``conj_pairs=True``): the arrays hold one of each conjugate pair of a
real system with 2 N2 states, as ``ssm_jax.hippo`` returns them, and the kernel is that
real system's. For diagonal systems that is K_k = 2 Re(sum_n C_n A_bar_n^k B_bar_n). A
DPLR system's low-rank term couples the pairs, so :func:`kernel_dplr` works on the
conjugate extension [x, conj(x)] (``ssm_jax.discretize.conj_extend``), as S4's
``cauchy_conj`` does; the result is real. With ``conj_pairs=False`` the arrays are the
whole system and a complex system gives a complex kernel (nothing is dropped).

Forms
-----
* :func:`kernel_diag` (Vandermonde): K[k, h] = sum_n C[h,n] B_bar[h,n] A_bar[h,n]^k.
  :func:`kernel_s4d` is the S4D convenience from continuous (A, B, C, dt).
* :func:`kernel_dplr` (S4's generating function + Cauchy kernel): for the bilinear
  discretization of A = diag(Lambda) - sum_r P_r Q_r^*, the truncated generating function
  sum_{k<L} K_k z^k = C~ (I - A_bar z)^{-1} B_bar, with S4's C~ = C (I - A_bar^L), is
  evaluated at the L-th roots of unity z_j = exp(-2 pi i j / L), where it equals the DFT
  of K, and inverted by an FFT. With a = 2/dt (1 - z), b = 1 + z and
  R = diag(1 / (a - b Lambda)),

      C~ (I - A_bar z)^{-1} B_bar = 2 C~ (a I - b A)^{-1} B
          = 2 [k(C~, B) - b k(C~, P) (I_r + b k(Q^*, P))^{-1} k(Q^*, B)],
      k(x, y) = sum_n x_n y_n R_n      (the Cauchy kernel; Woodbury for the low rank),

  S4's (2/dt (1-z)/(1+z), 2/(1+z)) form multiplied through by (1 + z), so z = -1 needs
  no special care. :func:`dplr_c_tilde` / :func:`dplr_c_from_tilde` convert C <-> C~
  (the step mode needs C); :func:`c_tilde` / :func:`c_from_tilde` do it for any dense A_bar.
* :func:`kernel_dense`: Krylov sequence [B_bar, A_bar B_bar, A_bar^2 B_bar, ...] by
  doubling (log2 L matrix products), for dense A (the initialization ablation).

Recurrent (step) mode of an S4 (DPLR) layer whose parameters are (Lambda, P, B, C~, dt),
matching :func:`kernel_dplr` (``conj_pairs=True``)::

    A_bar, B_bar = bilinear_dplr(Lambda, P, P, B, dt)             # (H, M, M), (H, M), M = 2 N2
    C = conj_extend(dplr_c_from_tilde(Lambda, P, P, C_tilde, dt, L))  # (H, M)
    x_k = A_bar x_{k-1} + B_bar u_k,   y_k = Re(C x_k) + D u_k      # x complex (batch, H, M)

(x stays conjugate-paired, so one may keep its first half and extend it each step.)
For a diagonal (S4D) layer: A_bar, B_bar = zoh_diag(A, B, dt); x_k = A_bar x_{k-1} +
B_bar u_k; y_k = 2 Re(C x_k) + D u_k, matching :func:`kernel_diag` / :func:`kernel_s4d`.

Convolution
-----------
* :func:`causal_conv`: y_t = sum_{s<=t} K_{t-s} u_s + D u_t, by FFT of length 2L
  (zero padding, so no wrap-around). u (batch, L, H), K (L, H), D (H,).
* :func:`bidirectional_conv` (S4's bidirectional form):
  y_t = sum_{s<=t} K_fwd[t-s] u_s + sum_{s>t} K_bwd[s-t-1] u_s + D u_t,
  one FFT of length 2L with the kernel [K_fwd, reverse(K_bwd)]. (K_bwd[L-1] is unused.)

Precision and cost
------------------
Matrix products run at full float32 precision (``ssm_jax.discretize.full_precision``;
GPUs otherwise use TF32, ~1e-3 relative error in these kernels). In float32, against a
float64 evaluation (HiPPO-LegS, N = 64, L = 4096, dt in [1e-3, 0.5]), ``kernel_dplr`` and
``kernel_s4d`` agree to ~1e-5 relative. ``kernel_dplr`` stores the (H, L/2+1, 2 N2)
Cauchy matrix (about 1 GiB forward at H = 256, N = 64, L = 16384). Measured on one H100
(jax 0.11.2, H = 256, N = 64, median of 20 jitted calls): ``kernel_dplr`` 0.2 / 0.5 /
1.5 ms at L = 1024 / 4096 / 16384, ``kernel_s4d`` 0.13 / 0.24 / 0.75 ms.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ssm_jax import _checks
from ssm_jax.discretize import _dplr_args, bilinear_dplr, conj_extend, full_precision, zoh_diag

__all__ = [
    "kernel_diag",
    "kernel_diag_ref",
    "kernel_s4d",
    "kernel_dplr",
    "kernel_dplr_ref",
    "kernel_dense",
    "kernel_dense_ref",
    "c_tilde",
    "c_from_tilde",
    "dplr_c_tilde",
    "dplr_c_from_tilde",
    "causal_conv",
    "causal_conv_ref",
    "bidirectional_conv",
    "bidirectional_conv_ref",
]


# ----------------------------------------------------------------------------- checks


def _check_L(L) -> int:
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int (static), got {L!r}")
    return L


def _diag_kernel_args(A_bar, B_bar, C, L):
    A_bar, B_bar, C = (jnp.asarray(x) for x in (A_bar, B_bar, C))
    for x, name in ((A_bar, "A_bar"), (B_bar, "B_bar"), (C, "C")):
        _checks.check_float(x, name, allow_complex=True)
    _checks.check_shape(C, "C", ("H", "N"))
    _checks.check_shape(A_bar, "A_bar", C.shape)
    _checks.check_shape(B_bar, "B_bar", C.shape)
    return A_bar, B_bar, C, _check_L(L)


def _finish(K, conj_pairs: bool):
    """(L, H) kernel: 2 Re(K) for conjugate-pair halves, else K as it is."""
    return 2 * K.real if conj_pairs else K


# ----------------------------------------------------------------------------- diagonal


def _powers(A_bar, L):
    """A_bar^k for k = 0..L-1, stacked on a leading axis: (L,) + A_bar.shape.

    By doubling, X_{2m} = [X_m, A_bar^m X_m] (log2 L parallel steps): each power adds
    at most ceil(log2 L) roundings, where a running product adds k. The rounding of A_bar
    itself still grows as k * eps in A_bar^k; for A_bar = exp(dt A) with small dt,
    :func:`kernel_s4d` (which exponentiates k dt A directly) is more accurate.
    """
    X = jnp.ones((1,) + A_bar.shape, A_bar.dtype)
    apow = A_bar
    while X.shape[0] < L:
        X = jnp.concatenate([X, X * apow[None]], axis=0)
        if X.shape[0] < L:
            apow = apow * apow
    return X[:L]


@functools.partial(jax.jit, static_argnames=("L", "conj_pairs"))
@full_precision
def kernel_diag(A_bar, B_bar, C, L: int, conj_pairs: bool = True):
    """Vandermonde kernel of a diagonal SSM: K[k, h] = sum_n C[h,n] B_bar[h,n] A_bar[h,n]^k.

    With ``conj_pairs`` (N holds one of each conjugate pair) K = 2 Re(...).

    Args:
      A_bar, B_bar, C: (H, N), real or complex.
      L: kernel length (static int).
    Returns:
      K (L, H): real when ``conj_pairs`` or all inputs real, else complex.
    """
    A_bar, B_bar, C, L = _diag_kernel_args(A_bar, B_bar, C, L)
    K = jnp.einsum("hn,khn->kh", C * B_bar, _powers(A_bar, L))
    return _finish(K, conj_pairs)


@full_precision
def kernel_diag_ref(A_bar, B_bar, C, L: int, conj_pairs: bool = True):
    """Reference for :func:`kernel_diag`: loop over k, x <- A_bar * x."""
    A_bar, B_bar, C, L = _diag_kernel_args(A_bar, B_bar, C, L)
    x, out = B_bar, []
    for _ in range(L):
        out.append(jnp.sum(C * x, axis=-1))
        x = A_bar * x
    return _finish(jnp.stack(out), conj_pairs)


@functools.partial(jax.jit, static_argnames=("L", "conj_pairs"))
@full_precision
def kernel_s4d(A, B, C, dt, L: int, conj_pairs: bool = True):
    """S4D kernel from the continuous diagonal system, ZOH discretized:

    K[k, h] = 2 Re(sum_n C[h,n] (exp(dt_h A[h,n]) - 1)/A[h,n] B[h,n] exp(k dt_h A[h,n])),

    the powers as exp(k dt A) (no repeated products). A (H, N) or (N,), B (H, N) or (N,),
    C (H, N), dt (H,). Returns K (L, H).
    """
    C = jnp.asarray(C)
    _checks.check_shape(C, "C", ("H", "N"))
    dt = jnp.asarray(dt)
    _checks.check_shape(dt, "dt", (C.shape[0],))
    _, B_bar = zoh_diag(A, B, dt)
    A = jnp.broadcast_to(jnp.asarray(A), B_bar.shape)
    _, B_bar, C, L = _diag_kernel_args(A, B_bar, C, L)
    k = jnp.arange(L, dtype=jnp.result_type(dt, jnp.float32))
    powers = jnp.exp(k[:, None, None] * (dt[:, None] * A)[None])
    K = jnp.einsum("hn,khn->kh", C * B_bar, powers)
    return _finish(K, conj_pairs)


# ----------------------------------------------------------------------------- dense


def _check_C_and_dense_A(C, A_bar):
    """C (H, N) and a dense A_bar (N, N) shared or (H, N, N) per channel; returns (H, N)."""
    _checks.check_shape(C, "C", ("H", "N"))
    H, N = C.shape
    if A_bar.ndim == 2:
        _checks.check_shape(A_bar, "A_bar", (N, N))
    else:
        _checks.check_shape(A_bar, "A_bar", (H, N, N))
    return H, N


def _dense_kernel_args(A_bar, B_bar, C, L):
    A_bar, B_bar, C = (jnp.asarray(x) for x in (A_bar, B_bar, C))
    for x, name in ((A_bar, "A_bar"), (B_bar, "B_bar"), (C, "C")):
        _checks.check_float(x, name, allow_complex=True)
    H, N = _check_C_and_dense_A(C, A_bar)
    if B_bar.ndim == 1:
        _checks.check_shape(B_bar, "B_bar", (N,))
    else:
        _checks.check_shape(B_bar, "B_bar", (H, N))
    dtype = jnp.result_type(A_bar, B_bar, C)
    A_bar = jnp.broadcast_to(A_bar.astype(dtype), (H, N, N))
    B_bar = jnp.broadcast_to(B_bar.astype(dtype), (H, N))
    return A_bar, B_bar, C.astype(dtype), _check_L(L)


@functools.partial(jax.jit, static_argnames=("L",))
@full_precision
def kernel_dense(A_bar, B_bar, C, L: int):
    """Kernel of a dense SSM, K[k, h] = C[h] A_bar[h]^k B_bar[h], by Krylov doubling.

    X_1 = [B_bar]; X_{2m} = [X_m, A_bar^m X_m] (A_bar^m by repeated squaring), so
    ceil(log2 L) matrix products.

    Args:
      A_bar: (N, N) shared or (H, N, N); B_bar: (N,) or (H, N); C: (H, N).
      L: kernel length (static int).
    Returns:
      K (L, H), complex if any input is complex.
    """
    A_bar, B_bar, C, L = _dense_kernel_args(A_bar, B_bar, C, L)
    X = B_bar[:, :, None]  # (H, N, m)
    Apow = A_bar
    while X.shape[-1] < L:
        X = jnp.concatenate([X, Apow @ X], axis=-1)
        if X.shape[-1] < L:
            Apow = Apow @ Apow
    return jnp.einsum("hn,hnk->kh", C, X[..., :L])


@full_precision
def kernel_dense_ref(A_bar, B_bar, C, L: int):
    """Reference for :func:`kernel_dense`: loop over k, x <- A_bar x."""
    A_bar, B_bar, C, L = _dense_kernel_args(A_bar, B_bar, C, L)
    x, out = B_bar, []
    for _ in range(L):
        out.append(jnp.sum(C * x, axis=-1))
        x = jnp.einsum("hnm,hm->hn", A_bar, x)
    return jnp.stack(out)


def _c_tilde_args(C, A_bar, L):
    C, A_bar = jnp.asarray(C), jnp.asarray(A_bar)
    _checks.check_float(C, "C", allow_complex=True)
    _checks.check_float(A_bar, "A_bar", allow_complex=True)
    H, N = _check_C_and_dense_A(C, A_bar)
    dtype = jnp.result_type(C, A_bar)
    A_bar = jnp.broadcast_to(A_bar.astype(dtype), (H, N, N))
    I_minus = jnp.eye(N, dtype=dtype) - jnp.linalg.matrix_power(A_bar, _check_L(L))
    return C.astype(dtype), I_minus


@functools.partial(jax.jit, static_argnames=("L",))
@full_precision
def c_tilde(C, A_bar, L: int):
    """S4's C~ = C (I - A_bar^L), row vector per channel. C (H, N); A_bar (N, N) or (H, N, N)."""
    C, I_minus = _c_tilde_args(C, A_bar, L)
    return jnp.einsum("hn,hnm->hm", C, I_minus)


@functools.partial(jax.jit, static_argnames=("L",))
@full_precision
def c_from_tilde(C_tilde, A_bar, L: int):
    """Inverse of :func:`c_tilde`: C = C~ (I - A_bar^L)^{-1}. Shapes as :func:`c_tilde`."""
    C_tilde, I_minus = _c_tilde_args(C_tilde, A_bar, L)
    return jnp.linalg.solve(jnp.swapaxes(I_minus, -1, -2), C_tilde[..., None])[..., 0]


# ----------------------------------------------------------------------------- DPLR


def _dplr_c_convert(fn, Lambda, P, Q, C, dt, L, conj_pairs):
    C = jnp.asarray(C)
    _checks.check_shape(C, "C", ("H", "N2"))
    A_bar, _ = bilinear_dplr(Lambda, P, Q, jnp.zeros(C.shape, C.dtype), dt, conj_pairs)
    N2 = C.shape[-1]
    out = fn(conj_extend(C) if conj_pairs else C, A_bar, L)
    return out[..., :N2]


@functools.partial(jax.jit, static_argnames=("L", "conj_pairs"))
@full_precision
def dplr_c_tilde(Lambda, P, Q, C, dt, L: int, conj_pairs: bool = True):
    """C~ = C (I - A_bar^L) for the bilinear DPLR system (conjugate-extended if conj_pairs).

    Shapes as :func:`kernel_dplr`; returns C~ (H, N2) (the first half of the extension,
    whose second half is its conjugate).
    """
    return _dplr_c_convert(c_tilde, Lambda, P, Q, C, dt, L, conj_pairs)


@functools.partial(jax.jit, static_argnames=("L", "conj_pairs"))
@full_precision
def dplr_c_from_tilde(Lambda, P, Q, C_tilde, dt, L: int, conj_pairs: bool = True):
    """C = C~ (I - A_bar^L)^{-1} for the bilinear DPLR system; inverse of :func:`dplr_c_tilde`."""
    return _dplr_c_convert(c_from_tilde, Lambda, P, Q, C_tilde, dt, L, conj_pairs)


def _cauchy(v, a, b, Lambda):
    """Cauchy kernel sum_m v[i, m] / (a_j - b_j Lambda_m): v (n, M), a, b (J,), Lambda (M,) -> (n, J).

    The Cauchy matrix (J, M) is formed once and all n vectors go through one matrix
    product. (On an H100 this beat four separate products by ~1.8x and a fused
    divide-and-sum by ~2x; S4 uses a custom CUDA / KeOps kernel instead.)
    """
    R = 1.0 / (a[:, None] - b[:, None] * Lambda[None, :])  # (J, M)
    return v @ R.T


def _dplr_transfer_one(Lambda, P, Q, B, C, dt, z):
    """C~ (I - A_bar z)^{-1} B_bar at points z (J,) for one channel (Woodbury + Cauchy).

    Lambda, B, C (M,); P, Q (r, M); dt (); returns (J,).
    """
    r = P.shape[0]
    a = (2.0 / dt) * (1 - z)  # (J,)
    b = 1 + z
    Qc = jnp.conj(Q)
    v = jnp.concatenate([(C * B)[None], C * P, Qc * B, (Qc[:, None, :] * P[None, :, :]).reshape(r * r, -1)])
    k = _cauchy(v, a, b, Lambda)  # (1 + 2r + r^2, J)
    k_cb, k_cp, k_qb = k[0], k[1 : 1 + r], k[1 + r : 1 + 2 * r]
    k_qp = k[1 + 2 * r :]
    if r == 1:
        corr = k_cp[0] * k_qb[0] / (1 + b * k_qp[0])
    else:
        core = jnp.eye(r, dtype=k.dtype) + b[:, None, None] * jnp.moveaxis(k_qp.reshape(r, r, -1), -1, 0)
        corr = jnp.einsum("rj,jr->j", k_cp, jnp.linalg.solve(core, k_qb.T[..., None])[..., 0])
    return 2 * (k_cb - b * corr)


@functools.partial(jax.jit, static_argnames=("L", "conj_pairs"))
@full_precision
def kernel_dplr(Lambda, P, Q, B, C, dt, L: int, conj_pairs: bool = True):
    """S4 kernel of the bilinear-discretized DPLR system A = diag(Lambda) - sum_r P_r Q_r^*.

    K = IFFT_j[C~ (I - A_bar z_j)^{-1} B_bar], z_j = exp(-2 pi i j/L), evaluated by the
    Cauchy kernel and the Woodbury identity (module docstring). C is S4's C~ =
    C (I - A_bar^L) (see :func:`dplr_c_tilde`).

    Args:
      Lambda: (N2,) or (H, N2); P, Q: (H, N2) for rank 1 or (rank, H, N2);
      B, C: (H, N2); dt: (H,) real; L: kernel length (static int).
      conj_pairs: arrays are halves of conjugate pairs; the kernel is the real system's.
    Returns:
      K (L, H): real with ``conj_pairs``, complex without.
    """
    C = jnp.asarray(C)
    _checks.check_float(C, "C", allow_complex=True)
    Lambda, P, Q, B, dt = _dplr_args(Lambda, P, Q, B, dt)
    _checks.check_shape(C, "C", B.shape)
    L = _check_L(L)
    if conj_pairs:
        Lambda, P, Q, B, C = (conj_extend(x) for x in (Lambda, P, Q, B, C))
    cdtype = jnp.result_type(Lambda, P, Q, B, C, jnp.complex64)
    rdtype = jnp.finfo(cdtype).dtype
    n_freq = L // 2 + 1 if conj_pairs else L
    z = jnp.exp((-2j * jnp.pi / L) * jnp.arange(n_freq, dtype=rdtype)).astype(cdtype)
    transfer = jax.vmap(_dplr_transfer_one, in_axes=(0, 1, 1, 0, 0, 0, None))(
        Lambda.astype(cdtype), P.astype(cdtype), Q.astype(cdtype), B.astype(cdtype),
        C.astype(cdtype), dt.astype(rdtype), z,
    )  # (H, n_freq)
    if conj_pairs:
        K = jnp.fft.irfft(transfer, n=L, axis=-1)
    else:
        K = jnp.fft.ifft(transfer, n=L, axis=-1)
    return K.T


@full_precision
def kernel_dplr_ref(Lambda, P, Q, B, C, dt, L: int, conj_pairs: bool = True):
    """Reference for :func:`kernel_dplr`: dense bilinear A_bar, C = C~ (I - A_bar^L)^{-1},
    then K_k = C A_bar^k B_bar by a loop (:func:`kernel_dense_ref`)."""
    A_bar, B_bar = bilinear_dplr(Lambda, P, Q, B, dt, conj_pairs)
    C_ext = conj_extend(C) if conj_pairs else jnp.asarray(C)
    C_full = c_from_tilde(C_ext, A_bar, L)
    K = kernel_dense_ref(A_bar, B_bar, C_full, L)
    return K.real if conj_pairs else K


# ----------------------------------------------------------------------------- convolution


def _conv_args(u, K, D, name="K"):
    u, K = jnp.asarray(u), jnp.asarray(K)
    _checks.check_float(u, "u")
    _checks.check_float(K, name)
    _checks.check_shape(u, "u", ("batch", "L", "H"))
    _checks.check_shape(K, name, u.shape[1:])
    if D is not None:
        D = jnp.asarray(D)
        _checks.check_float(D, "D")
        _checks.check_shape(D, "D", (u.shape[2],))
    return u, K, D


def _fft_conv(u, k, L):
    """Circular convolution of length n = k.shape[0] >= 2L, truncated to the first L."""
    n = k.shape[0]
    dtype = jnp.promote_types(jnp.result_type(u, k), jnp.float32)
    uf = jnp.fft.rfft(u.astype(dtype), n=n, axis=1)
    kf = jnp.fft.rfft(k.astype(dtype), n=n, axis=0)
    return jnp.fft.irfft(uf * kf[None], n=n, axis=1)[:, :L]


def _add_D(y, u, K, D):
    """y + D u, cast to the promoted dtype of (u, K, D)."""
    out_dtype = jnp.result_type(u, K) if D is None else jnp.result_type(u, K, D)
    if D is not None:
        y = y + D * u.astype(y.dtype)
    return y.astype(out_dtype)


@jax.jit
@full_precision
def causal_conv(u, K, D=None):
    """Causal convolution by FFT: y_t = sum_{s<=t} K_{t-s} u_s + D u_t.

    Both padded to 2L (no wrap-around). u (batch, L, H) real, K (L, H) real, D (H,) or
    None. Returns y (batch, L, H) in the promoted dtype of (u, K, D), computed in at least float32.
    """
    u, K, D = _conv_args(u, K, D)
    L = u.shape[1]
    y = _fft_conv(u, jnp.pad(K, ((0, L), (0, 0))), L)
    return _add_D(y, u, K, D)


def _toeplitz(K_fwd, K_bwd, L):
    """T[t, s] = K_fwd[t-s] for s <= t, K_bwd[s-t-1] for s > t (0 if K_bwd is None): (L, L, H)."""
    t = jnp.arange(L)
    lag = t[:, None] - t[None, :]
    T = jnp.where((lag >= 0)[..., None], K_fwd[jnp.clip(lag, 0, L - 1)], 0)
    if K_bwd is not None:
        T = T + jnp.where((lag < 0)[..., None], K_bwd[jnp.clip(-lag - 1, 0, L - 1)], 0)
    return T


@full_precision
def causal_conv_ref(u, K, D=None):
    """Reference for :func:`causal_conv`: direct sum with the Toeplitz matrix T[t,s] = K[t-s]."""
    u, K, D = _conv_args(u, K, D)
    y = jnp.einsum("tsh,bsh->bth", _toeplitz(K, None, u.shape[1]), u.astype(jnp.float32))
    return _add_D(y, u, K, D)


@jax.jit
@full_precision
def bidirectional_conv(u, K_fwd, K_bwd, D=None):
    """S4's bidirectional convolution:

    y_t = sum_{s<=t} K_fwd[t-s] u_s + sum_{s>t} K_bwd[s-t-1] u_s + D u_t,

    one circular convolution of length 2L with k = [K_fwd, reverse(K_bwd)]
    (K_bwd[L-1] does not enter). u (batch, L, H), K_fwd, K_bwd (L, H), D (H,) or None.
    Returns y (batch, L, H) in the promoted dtype of (u, K_fwd, D).
    """
    u, K_fwd, D = _conv_args(u, K_fwd, D, "K_fwd")
    _, K_bwd, _ = _conv_args(u, K_bwd, None, "K_bwd")
    L = u.shape[1]
    k = jnp.concatenate([K_fwd, K_bwd[::-1]], axis=0)
    return _add_D(_fft_conv(u, k, L), u, K_fwd, D)


@full_precision
def bidirectional_conv_ref(u, K_fwd, K_bwd, D=None):
    """Reference for :func:`bidirectional_conv`: direct sum with T[t,s] = K_fwd[t-s] (s <= t),
    K_bwd[s-t-1] (s > t)."""
    u, K_fwd, D = _conv_args(u, K_fwd, D, "K_fwd")
    _, K_bwd, _ = _conv_args(u, K_bwd, None, "K_bwd")
    T = _toeplitz(K_fwd, K_bwd, u.shape[1])
    y = jnp.einsum("tsh,bsh->bth", T, u.astype(jnp.float32))
    return _add_D(y, u, K_fwd, D)
