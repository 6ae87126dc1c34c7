"""HiPPO matrices, their normal-plus-low-rank (NPLR / DPLR) forms, S4D and random inits.

Initialization-time code: everything here is numpy and returns float64 / complex128
arrays (cast them with ``jnp.asarray(x, dtype)`` when you build parameters).

Conventions (those of the S4 repository's ``transition`` / ``rank_correction`` / ``nplr``)
-------------------------------------------------------------------------------------
The continuous system is x'(t) = A x(t) + B u(t), x of size N.

* ``legs`` (HiPPO-LegS, scaled Legendre):
  A[n, k] = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k;
  B[n] = sqrt(2n+1).
* ``legt`` (HiPPO-LegT, translated Legendre; the LMU form halved for timescale
  correctness, as S4 does): A[n, k] = -1/2 sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else
  (-1)^(n-k)); B[n] = 1/2 sqrt(2n+1).
* ``lagt`` (translated Laguerre): A = I/2 - tril(ones) (-1/2 on the diagonal, -1 below);
  B[n] = 1.
* ``fout`` (translated Fourier): the skew matrix pi * (-diag(d, 1) + diag(d, -1)) with
  d = [0, 0, 1, 0, 2, 0, 3, ...], minus B B^T, where B = [1, 0, sqrt2, 0, sqrt2, 0, ...].

Low rank correction (:func:`low_rank`): P (rank, N) real with A + P^T P normal, in fact
equal to S + c I with S skew-symmetric (c = -1/2 for legs, 0 for the others):
legs P = sqrt(n + 1/2); legt (rank >= 2) P0 = sqrt((2n+1)/2) on odd n, P1 on even n;
lagt P = sqrt(1/2); fout P = B.

NPLR (:func:`nplr`): with AP = A + P^T P = V diag(Lambda) V^* (V unitary),

    A = V diag(Lambda) V^* - P^T P                       (original basis)
    V^* A V = diag(Lambda) - P_e^T conj(P_e),  P_e = P V^*^T, i.e. P_e[r] = V^* P[r]
    B_e = V^* B.

``nplr`` returns (Lambda, P_e, B_e, V). All N eigenvalues are kept.

DPLR (:func:`dplr`): A is real, so its eigenvalues come in conjugate pairs and
V = [V_h, conj(V_h)]. ``dplr`` keeps one of each pair, the one with Im(Lambda) >= 0
(S4 keeps the other one; conjugating Lambda, P, B and C together gives the same real
system), and returns (Lambda_h, P_h, B_h) with P_h[r] = V_h^* P[r], B_h = V_h^* B. The
real N-state system is recovered by conjugate extension, Lambda = [Lambda_h,
conj(Lambda_h)] and likewise for P, B, C. The low-rank term couples the two halves, so
``ssm_jax.kernels.kernel_dplr`` and ``ssm_jax.discretize.bilinear_dplr`` work on the
extended system (as S4's ``cauchy_conj`` does); with P = 0 this reduces to the
diagonal case's 2 * Re(...). Unlike S4, B is not clipped.

S4D initializations (:func:`s4d_init`, Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal State Space Models"), n = 0 .. N/2 - 1:

* ``legs``: the diagonal Lambda_h of the LegS DPLR form (real part -1/2).
* ``inv`` (S4D-Inv): A_n = -1/2 + i N/pi (N/(2n+1) - 1).
* ``lin`` (S4D-Lin): A_n = -1/2 + i pi n.

Random initializations for the ablation take an int ``seed`` (a
``numpy.random.default_rng(seed)`` stream), so the same seed gives the same matrices.

:func:`init_A` dispatches every name the initialization ablation uses and returns an
:class:`InitA` record saying the structure ("dplr", "diag" or "dense").
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

__all__ = [
    "MEASURES",
    "INIT_NAMES",
    "hippo",
    "low_rank",
    "nplr",
    "dplr",
    "dplr_basis",
    "s4d_init",
    "random_dense",
    "random_diag_real",
    "random_diag_complex",
    "InitA",
    "init_A",
]

MEASURES = ("legs", "legt", "lagt", "fout")
S4D_KINDS = ("legs", "inv", "lin")
INIT_NAMES = (
    "legs",
    "s4d_legs",
    "s4d_inv",
    "s4d_lin",
    "random_dense",
    "random_diag_real",
    "random_diag_complex",
)


# ----------------------------------------------------------------------------- checks


def _check_N(N, name: str = "N", even: bool = False) -> int:
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(N).__name__} {N!r}")
    N = int(N)
    if N < 1:
        raise ValueError(f"{name} must be >= 1, got {N}")
    if even and N % 2:
        raise ValueError(
            f"{name} must be even (the conjugate-pair-halved form keeps N/2 states), got {N}"
        )
    return N


def _check_measure(measure) -> str:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {list(MEASURES)}, got {measure!r}")
    return measure


def _check_rank(rank, measure: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    if measure == "legt" and rank < 2:
        raise ValueError("rank must be >= 2 for measure 'legt' (its correction has rank 2), got 1")
    return int(rank)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------- HiPPO


def hippo(measure: str, N: int):
    """HiPPO transition matrices (S4 ``transition`` conventions).

    x'(t) = A x(t) + B u(t); see the module docstring for each measure's closed form
    (LegS: A[n,k] = -sqrt(2n+1)sqrt(2k+1) (n>k), -(n+1) (n=k), 0 (n<k); B[n] = sqrt(2n+1)).

    Args:
      measure: one of ``legs``, ``legt``, ``lagt``, ``fout``.
      N: state size (>= 1).
    Returns:
      A (N, N) float64, B (N,) float64.
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    q = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * q + 1)
    row, col = np.meshgrid(q, q, indexing="ij")
    if measure == "legs":
        A = -np.where(row > col, r[:, None] * r[None, :], 0.0) - np.diag(q + 1)
        B = r.copy()
    elif measure == "legt":
        sign = np.where(row >= col, 1.0, (-1.0) ** (row - col))
        A = -0.5 * r[:, None] * sign * r[None, :]
        B = 0.5 * r
    elif measure == "lagt":
        A = np.eye(N) / 2 - np.tril(np.ones((N, N)))
        B = np.ones(N)
    else:  # fout
        B = _fout_b(N)
        d = np.stack([np.zeros(N // 2 + 1), np.arange(N // 2 + 1)], axis=-1).reshape(-1)[1:N]
        skew = np.pi * (-np.diag(d, 1) + np.diag(d, -1))
        A = skew - B[:, None] * B[None, :]
    return A, B


def _fout_b(N: int) -> np.ndarray:
    B = np.zeros(N)
    B[0::2] = np.sqrt(2.0)
    B[0] = 1.0
    return B


def low_rank(measure: str, N: int, rank: int = 1):
    """Low-rank correction P of S4's ``rank_correction``: A + P^T P is normal.

    A + P^T P = S + c I with S skew-symmetric (c = -1/2 for legs, 0 otherwise). Rows
    beyond the measure's own rank (1, or 2 for legt) are zero.

    Args:
      measure: HiPPO measure name; N: state size; rank: number of rows (>= 2 for legt).
    Returns:
      P (rank, N) float64.
    """
    measure = _check_measure(measure)
    N = _check_N(N)
    rank = _check_rank(rank, measure)
    q = np.arange(N, dtype=np.float64)
    if measure == "legs":
        P = np.sqrt(q + 0.5)[None]
    elif measure == "legt":
        p = np.sqrt(2 * q + 1) / np.sqrt(2.0)
        P = np.stack([np.where(q % 2 == 1, p, 0.0), np.where(q % 2 == 0, p, 0.0)])
    elif measure == "lagt":
        P = np.full((1, N), np.sqrt(0.5))
    else:  # fout
        P = _fout_b(N)[None]
    if rank > P.shape[0]:
        P = np.concatenate([P, np.zeros((rank - P.shape[0], N))], axis=0)
    return P


def _normal_part(measure: str, N: int, rank: int):
    """AP = A + P^T P (normal: skew-symmetric plus c I), and A, B, P."""
    A, B = hippo(measure, N)
    P = low_rank(measure, N, rank)
    AP = A + P.T @ P
    return AP, A, B, P


def _eig_normal(AP: np.ndarray):
    """Eigen-decomposition of AP = S + c I (S skew): Lambda (N,), unitary V (N, N).

    c is the mean of the diagonal; the imaginary parts come from the Hermitian -i S
    (``eigh``), which gives an orthonormal V even for repeated eigenvalues.
    """
    N = AP.shape[0]
    c = np.mean(np.diag(AP))
    S = AP - c * np.eye(N)
    if not np.allclose(S, -S.T, atol=1e-8 * max(1.0, np.abs(S).max())):
        raise AssertionError("A + P^T P is not skew-symmetric plus a multiple of I")
    w_im, V = np.linalg.eigh(-1j * S)
    return c + 1j * w_im, V


def nplr(measure: str, N: int, rank: int = 1):
    """Normal plus low-rank form of a HiPPO matrix, in the eigenbasis of the normal part.

    With A, B = hippo(measure, N) and P = low_rank(measure, N, rank):

        A = V diag(Lambda) V^* - P^T P,       V unitary,
        V^* A V = diag(Lambda) - P_e^T conj(P_e),   P_e[r] = V^* P[r],   B_e = V^* B.

    Args:
      measure: HiPPO measure; N: state size; rank: low-rank size (>= 2 for legt).
    Returns:
      Lambda (N,), P_e (rank, N), B_e (N,), V (N, N); all complex128.
    """
    AP, _, B, P = _normal_part(measure, N, rank)
    Lam, V = _eig_normal(AP)
    Vh = V.conj().T
    return Lam, P.astype(np.complex128) @ Vh.T, Vh @ B.astype(np.complex128), V


def _half_eigvecs(AP: np.ndarray):
    """One of each conjugate pair of AP's eigenpairs: Lambda_h (N/2,), V_h (N, N/2).

    Keeps Im(Lambda) >= 0 (sorted by increasing imaginary part). A real eigenvalue of
    AP has a real eigenspace of even dimension here (fout's zero pair); from it we
    build v = (a + i b)/sqrt(2) with a, b real orthonormal, so that v and conj(v) are
    orthonormal and V = [V_h, conj(V_h)] stays unitary.
    """
    N = AP.shape[0]
    Lam, V = _eig_normal(AP)
    order = np.argsort(-Lam.imag, kind="stable")
    Lam, V = Lam[order], V[:, order]
    # eigh is accurate to ~eps * ||S||; genuine pairs of LegS (N = 1024) come as close as 0.2
    # to the real axis with ||S|| ~ 3e5, so the threshold must stay near rounding level
    tol = 1e-9 * max(1.0, np.abs(Lam.imag).max())
    n_real = int(np.sum(np.abs(Lam.imag) < tol))
    n_pos = int(np.sum(Lam.imag >= tol))
    if n_real % 2 or n_pos != N // 2 - n_real // 2:
        raise AssertionError("eigenvalues of A + P^T P do not come in conjugate pairs")
    Lam_h = Lam[: N // 2].copy()
    V_h = V[:, : N // 2].copy()
    if n_real:
        real_block = V[:, n_pos : n_pos + n_real]
        basis = np.concatenate([real_block.real, real_block.imag], axis=1)
        U, s, _ = np.linalg.svd(basis, full_matrices=False)
        U = U[:, :n_real]
        for j in range(n_real // 2):
            V_h[:, n_pos + j] = (U[:, 2 * j] + 1j * U[:, 2 * j + 1]) / np.sqrt(2.0)
            Lam_h[n_pos + j] = Lam[n_pos].real
    # increasing imaginary part, like S4 (which keeps the mirror image)
    return Lam_h[::-1].copy(), V_h[:, ::-1].copy()


def dplr(measure: str, N: int, rank: int = 1):
    """Conjugate-pair-halved NPLR form (what S4 parameterizes), N even.

    With V = [V_h, conj(V_h)] unitary and AP = A + P^T P = 2 Re(V_h diag(Lambda_h) V_h^*):
    P_h[r] = V_h^* P[r], B_h = V_h^* B. The real system (A, B) is, in the basis V, the
    conjugate extension diag([Lambda_h, conj Lambda_h]) - p p^*, p = [P_h, conj P_h]
    (see the module docstring).

    Returns:
      Lambda_h (N/2,), P_h (rank, N/2), B_h (N/2,); complex128, Im(Lambda_h) >= 0.
    """
    measure = _check_measure(measure)
    N = _check_N(N, even=True)
    AP, _, B, P = _normal_part(measure, N, rank)
    Lam_h, V_h = _half_eigvecs(AP)
    Vh = V_h.conj().T
    return Lam_h, P.astype(np.complex128) @ Vh.T, Vh @ B.astype(np.complex128)


def dplr_basis(measure: str, N: int, rank: int = 1):
    """The half eigenbasis V_h (N, N/2) used by :func:`dplr` (complex128)."""
    measure = _check_measure(measure)
    N = _check_N(N, even=True)
    AP, _, _, _ = _normal_part(measure, N, rank)
    return _half_eigvecs(AP)[1]


# ----------------------------------------------------------------------------- S4D


def s4d_init(kind: str, N: int):
    """S4D diagonal initializations (Gu et al. 2022), n = 0 .. N/2 - 1.

    ``legs``: diagonal Lambda_h of the LegS DPLR form (real part -1/2);
    ``inv``:  A_n = -1/2 + i N/pi (N/(2n+1) - 1);
    ``lin``:  A_n = -1/2 + i pi n.

    Returns:
      A (N/2,) complex128 (one of each conjugate pair; the kernel is 2 Re(...)).
    """
    if kind not in S4D_KINDS:
        raise ValueError(f"kind must be one of {list(S4D_KINDS)}, got {kind!r}")
    N = _check_N(N, even=True)
    n = np.arange(N // 2, dtype=np.float64)
    if kind == "legs":
        return dplr("legs", N)[0]
    if kind == "inv":
        return -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1)
    return -0.5 + 1j * np.pi * n


# ----------------------------------------------------------------------------- random


def random_dense(N: int, seed: int = 0):
    """Random dense A for the ablation: a Gaussian matrix shifted to be stable.

    G has i.i.d. N(0, 1) entries; A0 = G / sqrt(N) (spectral radius about 1, the
    circular law); A = A0 - (max Re eig(A0) + 1/2) I, so max Re eig(A) = -1/2, the real
    part of the S4D inits. B has i.i.d. N(0, 1) entries.

    Returns:
      A (N, N) float64, B (N,) float64.
    """
    N = _check_N(N)
    rng = np.random.default_rng(_check_seed(seed))
    A0 = rng.standard_normal((N, N)) / np.sqrt(N)
    shift = np.max(np.linalg.eigvals(A0).real) + 0.5
    A = A0 - shift * np.eye(N)
    B = rng.standard_normal(N)
    return A, B


def random_diag_real(N: int, seed: int = 0):
    """Random real diagonal A: -A_n log-uniform on [1/2, max(N/2, 1)], imaginary part 0.

    The range is that of S4D-Real's -(n+1) (n < N/2), widened down to the S4D inits' 1/2.

    Returns:
      A (N/2,) complex128 with Im A = 0 and Re A < 0.
    """
    N = _check_N(N, even=True)
    rng = np.random.default_rng(_check_seed(seed))
    lo, hi = np.log(0.5), np.log(max(N / 2, 1.0))
    re = -np.exp(rng.uniform(lo, hi, size=N // 2))
    return re + 0j


def random_diag_complex(N: int, seed: int = 0):
    """Random complex diagonal A: Re A_n = -1/2, Im A_n uniform on [0, pi N/2).

    pi N/2 bounds S4D-Lin's imaginary parts pi n (n < N/2).

    Returns:
      A (N/2,) complex128.
    """
    N = _check_N(N, even=True)
    rng = np.random.default_rng(_check_seed(seed))
    im = rng.uniform(0.0, np.pi * N / 2, size=N // 2)
    return -0.5 + 1j * im


# ----------------------------------------------------------------------------- dispatcher


@dataclasses.dataclass(frozen=True)
class InitA:
    """An initialization of the state matrix, as the ablation grid names it.

    structure:
      ``"dplr"``: A = diag(A) - P^T conj(P) over conjugate-pair halves (A (N/2,) is
        Lambda_h, P (rank, N/2), B (N/2,)), conj_pairs True;
      ``"diag"``: A (N/2,) one of each conjugate pair, B (N/2,), P None, conj_pairs True;
      ``"dense"``: A (N, N) real, B (N,) real, P None, conj_pairs False.
    B is the measure's own B for HiPPO-derived inits (V_h^* B) and ones for the others
    (as S4D does).
    """

    name: str
    structure: str
    A: np.ndarray
    B: np.ndarray
    P: Optional[np.ndarray] = None

    @property
    def conj_pairs(self) -> bool:
        return self.structure != "dense"

    @property
    def N(self) -> int:
        """The real state size (twice the stored size for conjugate-pair forms)."""
        return self.A.shape[-1] * (2 if self.conj_pairs else 1)


def init_A(name: str, N: int, seed: int = 0, rank: int = 1) -> InitA:
    """Initialization of A by name (see ``INIT_NAMES``), for the ablation grid.

    ``legs``: DPLR form of HiPPO-LegS (:func:`dplr`); ``s4d_legs`` / ``s4d_inv`` /
    ``s4d_lin``: :func:`s4d_init`; ``random_dense`` / ``random_diag_real`` /
    ``random_diag_complex``: the random inits (``seed`` is used only by these).
    ``rank`` is the DPLR rank (``legs`` only).

    Returns:
      :class:`InitA` (structure, A, B, P as numpy complex128 / float64 arrays).
    """
    if name not in INIT_NAMES:
        raise ValueError(f"name must be one of {list(INIT_NAMES)}, got {name!r}")
    if name == "legs":
        Lam, P, B = dplr("legs", N, rank)
        return InitA(name, "dplr", Lam, B, P)
    if name == "s4d_legs":
        Lam, _, B = dplr("legs", N)
        return InitA(name, "diag", Lam, B)
    if name in ("s4d_inv", "s4d_lin"):
        A = s4d_init(name[4:], N)
        return InitA(name, "diag", A, np.ones_like(A))
    if name == "random_dense":
        A, B = random_dense(N, seed)
        return InitA(name, "dense", A, B)
    fn = random_diag_real if name == "random_diag_real" else random_diag_complex
    A = fn(N, seed)
    return InitA(name, "diag", A, np.ones_like(A))
