"""SSM convolution kernels and FFT convolutions against their step-by-step references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import discretize as dz
from ssm_jax import hippo
from ssm_jax import kernels as kn
from ssm_jax.scan import linear_scan


def _c(x):
    return jnp.asarray(x, jnp.complex64)


def _f(x):
    return jnp.asarray(x, jnp.float32)


def _cn(rng, shape, scale=1.0):
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def _diag_system(rng, H, N):
    A = -rng.uniform(0.1, 1.0, (H, N)) + 1j * rng.uniform(-4, 4, (H, N))
    return _c(A), _c(_cn(rng, (H, N))), _c(_cn(rng, (H, N))), _f(rng.uniform(0.05, 0.3, H))


def _assert_close_grads(f1, f2, args, argnums, rtol=2e-4, atol=2e-5):
    g1 = jax.jit(jax.grad(f1, argnums=argnums))(*args)
    g2 = jax.jit(jax.grad(f2, argnums=argnums))(*args)
    for a, b in zip(g1, g2):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(jnp.abs(b).max())))


# ----------------------------------------------------------------------------- diagonal


@pytest.mark.parametrize("H,N,L", [(1, 1, 1), (3, 4, 17), (2, 8, 32)])
@pytest.mark.parametrize("conj_pairs", [True, False])
def test_kernel_diag_matches_reference(H, N, L, conj_pairs):
    rng = np.random.default_rng(H * 100 + N + L)
    A, B, C, dt = _diag_system(rng, H, N)
    Ab, Bb = dz.zoh_diag(A, B, dt)
    K = kn.kernel_diag(Ab, Bb, C, L, conj_pairs)
    K_ref = kn.kernel_diag_ref(Ab, Bb, C, L, conj_pairs)
    assert K.shape == (L, H)
    assert (K.dtype == jnp.float32) if conj_pairs else (K.dtype == jnp.complex64)
    np.testing.assert_allclose(K, K_ref, rtol=1e-5, atol=1e-5)
    # and an independent numpy float64 evaluation
    Abn, Bbn, Cn = (np.asarray(x, np.complex128) for x in (Ab, Bb, C))
    K_np = np.einsum("hn,khn->kh", Cn * Bbn, Abn[None] ** np.arange(L)[:, None, None])
    np.testing.assert_allclose(K, 2 * K_np.real if conj_pairs else K_np, rtol=1e-4, atol=1e-5)


def test_kernel_diag_real_system():
    rng = np.random.default_rng(0)
    Ab = _f(rng.uniform(-0.9, 0.9, (3, 5)))
    Bb, C = _f(rng.standard_normal((3, 5))), _f(rng.standard_normal((3, 5)))
    K = kn.kernel_diag(Ab, Bb, C, 12, conj_pairs=False)
    assert K.dtype == jnp.float32
    np.testing.assert_allclose(K, kn.kernel_diag_ref(Ab, Bb, C, 12, conj_pairs=False), rtol=1e-5, atol=1e-6)


def test_kernel_diag_gradients_match_reference():
    rng = np.random.default_rng(1)
    A, B, C, dt = _diag_system(rng, 2, 4)
    W = _f(rng.standard_normal((9, 2)))

    def make(fn):
        def loss(A, B, C, dt):
            Ab, Bb = dz.zoh_diag(A, B, dt)
            return jnp.sum(W * fn(Ab, Bb, C, 9))
        return loss

    _assert_close_grads(make(kn.kernel_diag), make(kn.kernel_diag_ref), (A, B, C, dt), (0, 1, 2, 3))


@pytest.mark.parametrize("H,N,L", [(2, 3, 10), (3, 8, 33)])
def test_kernel_s4d_is_zoh_vandermonde(H, N, L):
    rng = np.random.default_rng(N + L)
    A, B, C, dt = _diag_system(rng, H, N)
    K = kn.kernel_s4d(A, B, C, dt, L)
    Ab, Bb = dz.zoh_diag(A, B, dt)
    np.testing.assert_allclose(K, kn.kernel_diag_ref(Ab, Bb, C, L), rtol=1e-4, atol=1e-5)
    # A shared across channels
    K2 = kn.kernel_s4d(A[0], B, C, dt, L)
    Ab2, Bb2 = dz.zoh_diag(A[0], B, dt)
    np.testing.assert_allclose(K2, kn.kernel_diag_ref(Ab2, Bb2, C, L), rtol=1e-4, atol=1e-5)


def test_diag_kernel_conv_equals_recurrence():
    """causal_conv(u, kernel_diag) == the recurrence x_k = A_bar x_{k-1} + B_bar u_k, y = 2 Re(C x)."""
    rng = np.random.default_rng(2)
    batch, L, H, N = 2, 16, 3, 4
    A, B, C, dt = _diag_system(rng, H, N)
    Ab, Bb = dz.zoh_diag(A, B, dt)
    u = _f(rng.standard_normal((batch, L, H)))
    D = _f(rng.standard_normal(H))
    y_conv = kn.causal_conv(u, kn.kernel_diag(Ab, Bb, C, L), D)
    x = linear_scan(Ab[None, None], Bb[None, None] * u[..., None].astype(jnp.complex64), axis=1)
    y_rec = 2 * jnp.einsum("hn,blhn->blh", C, x, precision=jax.lax.Precision.HIGHEST).real + D * u
    np.testing.assert_allclose(y_conv, y_rec, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- dense


@pytest.mark.parametrize("H,N,L,shared", [(1, 1, 1, False), (3, 4, 7, False), (2, 5, 16, True), (2, 3, 33, False)])
def test_kernel_dense_matches_reference(H, N, L, shared):
    rng = np.random.default_rng(H + N + L)
    A = rng.standard_normal((N, N) if shared else (H, N, N)) / np.sqrt(N) - 1.0 * np.eye(N)
    B = rng.standard_normal((H, N))
    Ab, Bb = dz.bilinear_dense(_f(A), _f(B), _f(rng.uniform(0.1, 0.5, H)))
    C = _f(rng.standard_normal((H, N)))
    K = kn.kernel_dense(Ab, Bb, C, L)
    assert K.shape == (L, H) and K.dtype == jnp.float32
    np.testing.assert_allclose(K, kn.kernel_dense_ref(Ab, Bb, C, L), rtol=1e-4, atol=1e-5)
    # numpy matrix powers
    Abn = np.asarray(Ab, np.float64)
    K_np = np.stack([
        np.einsum("hn,hnm,hm->h", np.asarray(C), np.linalg.matrix_power(Abn, k), np.asarray(Bb)) for k in range(L)
    ])
    np.testing.assert_allclose(K, K_np, rtol=1e-4, atol=1e-5)


def test_kernel_dense_shared_A_and_B_and_grad():
    rng = np.random.default_rng(3)
    Ab = _f(0.3 * rng.standard_normal((4, 4)))
    Bb = _f(rng.standard_normal(4))
    C = _f(rng.standard_normal((2, 4)))
    K = kn.kernel_dense(Ab, Bb, C, 11)
    np.testing.assert_allclose(K[:, 0], kn.kernel_dense(Ab, Bb, C[:1], 11)[:, 0], rtol=1e-6)
    W = _f(rng.standard_normal((11, 2)))
    f1 = lambda a, b, c: jnp.sum(W * kn.kernel_dense(a, b, c, 11))
    f2 = lambda a, b, c: jnp.sum(W * kn.kernel_dense_ref(a, b, c, 11))
    _assert_close_grads(f1, f2, (Ab, Bb, C), (0, 1, 2))


# ----------------------------------------------------------------------------- DPLR


def _dplr_system(rng, H, N2, rank):
    Lam = -rng.uniform(0.2, 1.0, (H, N2)) + 1j * rng.uniform(0, 5, (H, N2))
    P = _cn(rng, (rank, H, N2), 0.5)
    Q = _cn(rng, (rank, H, N2), 0.5)
    B, C = _cn(rng, (H, N2)), _cn(rng, (H, N2))
    return _c(Lam), _c(P), _c(Q), _c(B), _c(C), _f(rng.uniform(0.05, 0.3, H))


@pytest.mark.parametrize("H,N2,L,rank", [(1, 1, 1, 1), (2, 3, 8, 1), (3, 4, 15, 2), (2, 6, 32, 1)])
@pytest.mark.parametrize("conj_pairs", [True, False])
def test_kernel_dplr_matches_reference(H, N2, L, rank, conj_pairs):
    rng = np.random.default_rng(H + 10 * N2 + L + rank)
    Lam, P, Q, B, C, dt = _dplr_system(rng, H, N2, rank)
    if rank == 1:
        P, Q = P[0], Q[0]  # the (H, N2) rank-1 form
    K = kn.kernel_dplr(Lam, P, Q, B, C, dt, L, conj_pairs)
    K_ref = kn.kernel_dplr_ref(Lam, P, Q, B, C, dt, L, conj_pairs)
    assert K.shape == (L, H)
    assert (K.dtype == jnp.float32) if conj_pairs else (K.dtype == jnp.complex64)
    scale = float(jnp.abs(K_ref).max())
    np.testing.assert_allclose(K, K_ref, rtol=1e-4, atol=1e-4 * scale)


def test_kernel_dplr_gradients_match_reference():
    rng = np.random.default_rng(4)
    Lam, P, Q, B, C, dt = _dplr_system(rng, 2, 3, 1)
    W = _f(rng.standard_normal((10, 2)))
    f1 = lambda lam, p, b, c, d: jnp.sum(W * kn.kernel_dplr(lam, p, p, b, c, d, 10))
    f2 = lambda lam, p, b, c, d: jnp.sum(W * kn.kernel_dplr_ref(lam, p, p, b, c, d, 10))
    _assert_close_grads(f1, f2, (Lam, P[0], B, C, dt), (0, 1, 2, 3, 4), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("N,L", [(4, 16), (8, 13)])
def test_kernel_dplr_of_hippo_equals_dense_hippo_kernel(N, L):
    """S4's kernel on the DPLR form of LegS == the dense LegS system discretized bilinearly."""
    rng = np.random.default_rng(N + L)
    H = 2
    A, B = hippo.hippo("legs", N)
    Lam, P, Bh = hippo.dplr("legs", N)
    V_h = hippo.dplr_basis("legs", N)
    C = rng.standard_normal((H, N))  # real C of the original system
    C_h = C @ V_h  # y = C x = C V [x_h, conj x_h] = 2 Re(C V_h x_h)
    dt = _f([0.05, 0.2])
    tile = lambda x: _c(np.broadcast_to(x, (H,) + x.shape[-1:]))
    Ct = kn.dplr_c_tilde(Lam, tile(P[0]), tile(P[0]), _c(C_h), dt, L)
    K = kn.kernel_dplr(_c(Lam), tile(P[0]), tile(P[0]), tile(Bh), Ct, dt, L)
    Ab, Bb = dz.bilinear_dense(_f(A), _f(B), dt)
    K_dense = kn.kernel_dense(Ab, Bb, _f(C), L)
    np.testing.assert_allclose(K, K_dense, rtol=1e-3, atol=1e-4 * float(jnp.abs(K_dense).max()))
    # also kernel_dense on the conjugate-extended DPLR system (with C, not C~)
    Ab_e, Bb_e = dz.bilinear_dplr(_c(Lam), tile(P[0]), tile(P[0]), tile(Bh), dt)
    K_ext = kn.kernel_dense(Ab_e, Bb_e, dz.conj_extend(_c(C_h)), L)
    np.testing.assert_allclose(K_ext.real, K_dense, rtol=1e-3, atol=1e-4 * float(jnp.abs(K_dense).max()))
    np.testing.assert_allclose(K_ext.imag, 0.0, atol=1e-4 * float(jnp.abs(K_dense).max()))


def test_c_tilde_round_trip():
    rng = np.random.default_rng(5)
    Lam, P, Q, B, C, dt = _dplr_system(rng, 2, 3, 1)
    Ct = kn.dplr_c_tilde(Lam, P[0], Q[0], C, dt, 7)
    np.testing.assert_allclose(kn.dplr_c_from_tilde(Lam, P[0], Q[0], Ct, dt, 7), C, rtol=1e-4, atol=1e-5)
    Ab = _f(0.4 * rng.standard_normal((2, 3, 3)))
    Cr = _f(rng.standard_normal((2, 3)))
    Ct = kn.c_tilde(Cr, Ab, 5)
    np.testing.assert_allclose(Ct, Cr - np.einsum("hn,hnm->hm", Cr, np.linalg.matrix_power(np.asarray(Ab), 5)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kn.c_from_tilde(Ct, Ab, 5), Cr, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("batch,L,H", [(1, 1, 1), (2, 7, 3), (3, 32, 4)])
@pytest.mark.parametrize("with_D", [False, True])
def test_causal_conv_matches_direct(batch, L, H, with_D):
    rng = np.random.default_rng(batch + L + H)
    u, K = _f(rng.standard_normal((batch, L, H))), _f(rng.standard_normal((L, H)))
    D = _f(rng.standard_normal(H)) if with_D else None
    y = kn.causal_conv(u, K, D)
    assert y.shape == (batch, L, H) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, kn.causal_conv_ref(u, K, D), rtol=1e-4, atol=1e-4)
    # a plain loop
    un, Kn = np.asarray(u, np.float64), np.asarray(K, np.float64)
    y_loop = np.zeros_like(un)
    for t in range(L):
        for s in range(t + 1):
            y_loop[:, t] += Kn[t - s] * un[:, s]
    if with_D:
        y_loop += np.asarray(D) * un
    np.testing.assert_allclose(y, y_loop, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,L,H", [(1, 1, 1), (2, 9, 3), (2, 16, 2)])
def test_bidirectional_conv_matches_direct(batch, L, H):
    rng = np.random.default_rng(7 * L + H)
    u = _f(rng.standard_normal((batch, L, H)))
    Kf, Kb = _f(rng.standard_normal((L, H))), _f(rng.standard_normal((L, H)))
    D = _f(rng.standard_normal(H))
    y = kn.bidirectional_conv(u, Kf, Kb, D)
    np.testing.assert_allclose(y, kn.bidirectional_conv_ref(u, Kf, Kb, D), rtol=1e-4, atol=1e-4)
    un, Kfn, Kbn = (np.asarray(x, np.float64) for x in (u, Kf, Kb))
    y_loop = np.asarray(D) * un
    for t in range(L):
        for s in range(L):
            y_loop[:, t] += Kfn[t - s] * un[:, s] if s <= t else Kbn[s - t - 1] * un[:, s]
    np.testing.assert_allclose(y, y_loop, rtol=1e-4, atol=1e-4)
    # with a zero backward kernel it is the causal convolution
    np.testing.assert_allclose(kn.bidirectional_conv(u, Kf, jnp.zeros_like(Kb), D), kn.causal_conv(u, Kf, D), atol=1e-5)


def test_conv_gradients_and_transforms():
    rng = np.random.default_rng(8)
    u, K = _f(rng.standard_normal((2, 12, 3))), _f(rng.standard_normal((12, 3)))
    Kb, D = _f(rng.standard_normal((12, 3))), _f(rng.standard_normal(3))
    W = _f(rng.standard_normal((2, 12, 3)))
    f1 = lambda u, k, d: jnp.sum(W * kn.causal_conv(u, k, d))
    f2 = lambda u, k, d: jnp.sum(W * kn.causal_conv_ref(u, k, d))
    _assert_close_grads(f1, f2, (u, K, D), (0, 1, 2))
    g1 = lambda u, k, d: jnp.sum(W * kn.bidirectional_conv(u, k, Kb, d))
    g2 = lambda u, k, d: jnp.sum(W * kn.bidirectional_conv_ref(u, k, Kb, d))
    _assert_close_grads(g1, g2, (u, K, D), (0, 1, 2))
    np.testing.assert_allclose(jax.jit(kn.causal_conv)(u, K, D), kn.causal_conv(u, K, D), rtol=1e-5, atol=1e-5)
    # vmap over an extra leading axis of u
    y_v = jax.vmap(lambda x: kn.causal_conv(x, K, D))(u[None])
    np.testing.assert_allclose(y_v[0], kn.causal_conv(u, K, D), rtol=1e-5, atol=1e-5)


def test_bfloat16_input():
    rng = np.random.default_rng(9)
    u = jnp.asarray(rng.standard_normal((1, 8, 2)), jnp.bfloat16)
    K = jnp.asarray(rng.standard_normal((8, 2)), jnp.bfloat16)
    y = kn.causal_conv(u, K)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(np.float32), kn.causal_conv_ref(u, K).astype(np.float32), rtol=2e-2, atol=2e-2)


def test_kernels_jit_and_vmap():
    rng = np.random.default_rng(10)
    Lam, P, Q, B, C, dt = _dplr_system(rng, 2, 3, 1)
    f = jax.jit(kn.kernel_dplr, static_argnums=(6,))
    np.testing.assert_allclose(f(Lam, P[0], Q[0], B, C, dt, 8), kn.kernel_dplr(Lam, P[0], Q[0], B, C, dt, 8), rtol=1e-5, atol=1e-5)
    # vmap over an ensemble of diagonal systems
    A, Bd, Cd, dtd = _diag_system(rng, 2, 3)
    Ab, Bb = dz.zoh_diag(A, Bd, dtd)
    stack = lambda x: jnp.stack([x, 2 * x])
    Kv = jax.vmap(lambda a, b, c: kn.kernel_diag(a, b, c, 6))(stack(Ab) / 2, stack(Bb), stack(Cd))
    np.testing.assert_allclose(Kv[0], kn.kernel_diag(Ab / 2, Bb, Cd, 6), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_name_the_argument():
    z = jnp.zeros((2, 3), jnp.complex64)
    with pytest.raises(ValueError, match="A_bar must have shape"):
        kn.kernel_diag(jnp.zeros((2, 4), jnp.complex64), z, z, 5)
    with pytest.raises(ValueError, match="L must be a positive int"):
        kn.kernel_diag(z, z, z, 0)
    with pytest.raises(TypeError, match="C must have a floating or complex dtype"):
        kn.kernel_diag(z, z, jnp.zeros((2, 3), jnp.int32), 5)
    with pytest.raises(ValueError, match="A_bar must have shape"):
        kn.kernel_dense(jnp.zeros((3, 4, 4)), jnp.zeros(4), jnp.zeros((2, 4)), 5)
    with pytest.raises(ValueError, match="C must have shape"):
        kn.kernel_dplr(jnp.zeros(3), z, z, z, jnp.zeros((2, 4), jnp.complex64), jnp.ones(2), 5)
    with pytest.raises(ValueError, match="Q must have shape"):
        kn.kernel_dplr(jnp.zeros(3), jnp.zeros((2, 2, 3)), z, z, z, jnp.ones(2), 5)
    u = jnp.zeros((2, 8, 3))
    with pytest.raises(ValueError, match="K must have shape"):
        kn.causal_conv(u, jnp.zeros((7, 3)))
    with pytest.raises(ValueError, match="u must have shape"):
        kn.causal_conv(jnp.zeros((8, 3)), jnp.zeros((8, 3)))
    with pytest.raises(ValueError, match="D must have shape"):
        kn.causal_conv(u, jnp.zeros((8, 3)), jnp.zeros(2))
    with pytest.raises(TypeError, match="K must have a floating dtype"):
        kn.causal_conv(u, jnp.zeros((8, 3), jnp.complex64))
    with pytest.raises(ValueError, match="K_bwd must have shape"):
        kn.bidirectional_conv(u, jnp.zeros((8, 3)), jnp.zeros((8, 2)))


def test_matmuls_run_at_full_precision():
    """Every dot in the kernels asks for HIGHEST precision (TF32 on GPUs costs ~1e-3 relative)."""
    rng = np.random.default_rng(11)
    Lam, P, Q, B, C, dt = _dplr_system(rng, 2, 3, 2)
    fns = {
        "kernel_dplr": lambda: kn.kernel_dplr(Lam, P, Q, B, C, dt, 8),
        "dplr_c_tilde": lambda: kn.dplr_c_tilde(Lam, P, Q, C, dt, 8),
        "kernel_dense": lambda: kn.kernel_dense(_f(np.eye(3)), _f(np.ones((2, 3))), _f(np.ones((2, 3))), 8),
        "zoh_dense": lambda: dz.zoh_dense(_f(-np.eye(3)), _f(np.ones(3)), 0.1),
    }
    for name, fn in fns.items():
        text = str(jax.make_jaxpr(fn)())
        n_dots = text.count("dot_general[")
        assert n_dots > 0, name
        assert text.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == n_dots, name


def test_kernel_s4d_gradients_match_reference():
    rng = np.random.default_rng(12)
    A, B, C, dt = _diag_system(rng, 3, 4)
    W = _f(rng.standard_normal((7, 3)))
    f1 = lambda a, b, c, d: jnp.sum(W * kn.kernel_s4d(a, b, c, d, 7))
    f2 = lambda a, b, c, d: jnp.sum(W * kn.kernel_diag_ref(*dz.zoh_diag(a, b, d), c, 7))
    _assert_close_grads(f1, f2, (A, B, C, dt), (0, 1, 2, 3))
