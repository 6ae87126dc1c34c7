"""HiPPO matrices, NPLR / DPLR forms, S4D and random initializations (numpy, float64)."""
import numpy as np
import pytest

from ssm_jax import hippo

MEASURES = ["legs", "legt", "lagt", "fout"]
RANK = {"legs": 1, "legt": 2, "lagt": 1, "fout": 1}


# ----------------------------------------------------------------------------- closed forms


def _legs_loop(N):
    A, B = np.zeros((N, N)), np.zeros(N)
    for n in range(N):
        B[n] = np.sqrt(2 * n + 1)
        for k in range(N):
            if n > k:
                A[n, k] = -np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A, B


def _legt_loop(N):
    A, B = np.zeros((N, N)), np.zeros(N)
    for n in range(N):
        B[n] = 0.5 * np.sqrt(2 * n + 1)
        for k in range(N):
            s = 1.0 if n >= k else (-1.0) ** (n - k)
            A[n, k] = -0.5 * np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1) * s
    return A, B


def _lagt_loop(N):
    A = np.array([[-0.5 if n == k else (-1.0 if n > k else 0.0) for k in range(N)] for n in range(N)])
    return A, np.ones(N)


def _fout_loop(N):
    B = np.array([1.0 if n == 0 else (np.sqrt(2) if n % 2 == 0 else 0.0) for n in range(N)])
    A = -np.outer(B, B)
    # frequency f rotates the pair of states (2f, 2f+1) at rate pi f
    for f in range(1, N // 2 + 1):
        i, j = 2 * f, 2 * f + 1
        if j < N:
            A[i, j] -= np.pi * f
            A[j, i] += np.pi * f
    return A, B


LOOPS = {"legs": _legs_loop, "legt": _legt_loop, "lagt": _lagt_loop, "fout": _fout_loop}


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [1, 2, 5, 8])
def test_hippo_matches_closed_form(measure, N):
    A, B = hippo.hippo(measure, N)
    A_ref, B_ref = LOOPS[measure](N)
    assert A.shape == (N, N) and B.shape == (N,)
    assert A.dtype == np.float64 and B.dtype == np.float64
    np.testing.assert_allclose(A, A_ref, atol=1e-12)
    np.testing.assert_allclose(B, B_ref, atol=1e-12)


def test_legs_small_values():
    A, B = hippo.hippo("legs", 3)
    s3, s5 = np.sqrt(3), np.sqrt(5)
    np.testing.assert_allclose(A, [[-1, 0, 0], [-s3, -2, 0], [-s5, -s3 * s5, -3]], atol=1e-12)
    np.testing.assert_allclose(B, [1, s3, s5], atol=1e-12)


@pytest.mark.parametrize("measure", MEASURES)
def test_hippo_is_stable(measure):
    A, _ = hippo.hippo(measure, 16)
    assert np.linalg.eigvals(A).real.max() < 1e-9


def test_hippo_bad_input():
    with pytest.raises(ValueError, match="measure"):
        hippo.hippo("legx", 4)
    with pytest.raises(ValueError, match="N must be >= 1"):
        hippo.hippo("legs", 0)
    with pytest.raises(TypeError, match="N must be an int"):
        hippo.hippo("legs", 4.0)
    with pytest.raises(ValueError, match="rank must be >= 2"):
        hippo.low_rank("legt", 4, rank=1)
    with pytest.raises(ValueError, match="rank"):
        hippo.nplr("legs", 4, rank=0)
    with pytest.raises(ValueError, match="N must be even"):
        hippo.dplr("legs", 5)


# ----------------------------------------------------------------------------- low rank / NPLR


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [2, 6, 9])
def test_low_rank_makes_normal(measure, N):
    A, _ = hippo.hippo(measure, N)
    rank = RANK[measure] + 1  # an extra zero row must not hurt
    P = hippo.low_rank(measure, N, rank)
    assert P.shape == (rank, N)
    np.testing.assert_allclose(P[-1], 0.0)
    M = A + P.T @ P
    c = np.mean(np.diag(M))
    S = M - c * np.eye(N)
    np.testing.assert_allclose(S, -S.T, atol=1e-10)
    np.testing.assert_allclose(M @ M.T, M.T @ M, atol=1e-9 * max(1, np.abs(M).max() ** 2))
    expected_c = -0.5 if measure == "legs" else 0.0
    np.testing.assert_allclose(c, expected_c, atol=1e-12)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [3, 8, 16])
def test_nplr_reconstructs_A(measure, N):
    A, B = hippo.hippo(measure, N)
    rank = RANK[measure]
    Lam, P_e, B_e, V = hippo.nplr(measure, N, rank)
    assert Lam.shape == (N,) and P_e.shape == (rank, N) and B_e.shape == (N,) and V.shape == (N, N)
    assert all(x.dtype == np.complex128 for x in (Lam, P_e, B_e, V))
    np.testing.assert_allclose(V.conj().T @ V, np.eye(N), atol=1e-10)
    A_rec = V @ (np.diag(Lam) - P_e.T @ P_e.conj()) @ V.conj().T
    assert np.linalg.norm(A_rec - A) <= 1e-5 * np.linalg.norm(A)
    np.testing.assert_allclose(A_rec.imag, 0.0, atol=1e-9 * np.abs(A).max())
    np.testing.assert_allclose(V @ B_e, B, atol=1e-10)
    # and in the original basis: A = V diag(Lambda) V^* - P^T P
    P = hippo.low_rank(measure, N, rank)
    np.testing.assert_allclose(V @ np.diag(Lam) @ V.conj().T - P.T @ P, A, atol=1e-9 * np.abs(A).max())


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("N", [2, 8, 12])
def test_dplr_conjugate_extension_is_the_hippo_system(measure, N):
    A, B = hippo.hippo(measure, N)
    rank = RANK[measure]
    Lam, P, Bh = hippo.dplr(measure, N, rank)
    V_h = hippo.dplr_basis(measure, N, rank)
    assert Lam.shape == (N // 2,) and P.shape == (rank, N // 2) and Bh.shape == (N // 2,)
    assert np.all(Lam.imag >= -1e-9)
    V = np.concatenate([V_h, V_h.conj()], axis=1)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(N), atol=1e-10)
    lam_ext = np.concatenate([Lam, Lam.conj()])
    p_ext = np.concatenate([P, P.conj()], axis=1)
    A_rec = V @ (np.diag(lam_ext) - p_ext.T @ p_ext.conj()) @ V.conj().T
    assert np.linalg.norm(A_rec - A) <= 1e-5 * np.linalg.norm(A)
    np.testing.assert_allclose(V @ np.concatenate([Bh, Bh.conj()]), B, atol=1e-9)


def test_dplr_legs_real_part_and_nplr_spectrum():
    Lam, _, _ = hippo.dplr("legs", 10)
    np.testing.assert_allclose(Lam.real, -0.5, atol=1e-12)
    full, _, _, _ = hippo.nplr("legs", 10)
    both = np.sort_complex(np.concatenate([Lam, Lam.conj()]))
    np.testing.assert_allclose(both, np.sort_complex(full), atol=1e-9)


# ----------------------------------------------------------------------------- S4D inits


@pytest.mark.parametrize("N", [2, 8, 64])
def test_s4d_inits_match_formulas(N):
    n = np.arange(N // 2)
    inv = hippo.s4d_init("inv", N)
    lin = hippo.s4d_init("lin", N)
    for A in (inv, lin):
        assert A.shape == (N // 2,) and np.iscomplexobj(A)
    np.testing.assert_allclose(lin, [complex(-0.5, np.pi * k) for k in n])
    np.testing.assert_allclose(inv, [complex(-0.5, N / np.pi * (N / (2 * k + 1) - 1)) for k in n])
    legs = hippo.s4d_init("legs", N)
    np.testing.assert_allclose(legs, hippo.dplr("legs", N)[0])


def test_s4d_init_bad_input():
    with pytest.raises(ValueError, match="kind"):
        hippo.s4d_init("foo", 8)
    with pytest.raises(ValueError, match="N must be even"):
        hippo.s4d_init("lin", 7)


# ----------------------------------------------------------------------------- random inits


@pytest.mark.parametrize("N", [2, 7, 32])
def test_random_dense_stable_and_seeded(N):
    A, B = hippo.random_dense(N, seed=3)
    assert A.shape == (N, N) and B.shape == (N,) and A.dtype == np.float64
    np.testing.assert_allclose(np.linalg.eigvals(A).real.max(), -0.5, atol=1e-8)
    A2, B2 = hippo.random_dense(N, seed=3)
    np.testing.assert_array_equal(A, A2)
    np.testing.assert_array_equal(B, B2)
    A3, _ = hippo.random_dense(N, seed=4)
    assert not np.allclose(A, A3)


@pytest.mark.parametrize("N", [2, 16, 64])
def test_random_diag_inits(N):
    real = hippo.random_diag_real(N, seed=1)
    assert real.shape == (N // 2,) and np.iscomplexobj(real)
    np.testing.assert_array_equal(real.imag, 0.0)
    assert np.all(real.real < 0)
    assert np.all(-real.real >= 0.5 - 1e-12) and np.all(-real.real <= max(N / 2, 1) + 1e-12)
    comp = hippo.random_diag_complex(N, seed=1)
    assert comp.shape == (N // 2,)
    np.testing.assert_array_equal(comp.real, -0.5)
    assert np.all((comp.imag >= 0) & (comp.imag < np.pi * N / 2))
    for fn in (hippo.random_diag_real, hippo.random_diag_complex):
        np.testing.assert_array_equal(fn(N, seed=5), fn(N, seed=5))
        if N > 2:
            assert not np.allclose(fn(N, seed=5), fn(N, seed=6))


def test_random_bad_seed():
    with pytest.raises(TypeError, match="seed"):
        hippo.random_dense(4, seed=1.5)
    with pytest.raises(ValueError, match="N must be even"):
        hippo.random_diag_complex(3)


# ----------------------------------------------------------------------------- dispatcher


@pytest.mark.parametrize("name", hippo.INIT_NAMES)
def test_init_A_every_name(name):
    N = 8
    init = hippo.init_A(name, N, seed=2)
    assert init.name == name and init.N == N
    if init.structure == "dense":
        assert init.A.shape == (N, N) and init.B.shape == (N,) and init.P is None
        assert not init.conj_pairs
        eig = np.linalg.eigvals(init.A)
    else:
        assert init.A.shape == (N // 2,) and init.B.shape == (N // 2,) and init.conj_pairs
        eig = init.A
        if init.structure == "dplr":
            assert init.P.shape == (1, N // 2)
        else:
            assert init.structure == "diag" and init.P is None
    assert eig.real.max() < 0


def test_init_A_bad_name():
    with pytest.raises(ValueError, match="name must be one of"):
        hippo.init_A("hippo", 8)


def test_half_eigvecs_keeps_pairs_close_to_the_real_axis():
    """A pair with |Im| = 0.1 next to one with |Im| = 1e6 (LegS at N = 1024 has 0.18 next to
    3e5) is a genuine pair, not a real eigenvalue; a zero pair (as in fout) is rebuilt so
    that V = [V_h, conj V_h] stays unitary."""
    rot = lambda w: np.array([[0.0, w], [-w, 0.0]])
    freqs = [0.1, 1e6, 0.0, 3.0]
    S = np.zeros((8, 8))
    for i, w in enumerate(freqs):
        S[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = rot(w)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))
    AP = Q @ S @ Q.T - 0.5 * np.eye(8)
    Lam, V_h = hippo._half_eigvecs(AP)
    np.testing.assert_allclose(np.sort(np.abs(Lam.imag)), sorted(freqs), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(Lam.real, -0.5, atol=1e-9)
    V = np.concatenate([V_h, V_h.conj()], axis=1)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(8), atol=1e-9)
    np.testing.assert_allclose(2 * ((V_h * Lam) @ V_h.conj().T).real, AP, atol=1e-8 * np.abs(AP).max())
