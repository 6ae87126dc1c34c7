"""Discretization rules against float64 numpy / scipy references, and diag vs dense vs DPLR."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ssm_jax import discretize as dz
from ssm_jax import hippo


def _rng(seed):
    return np.random.default_rng(seed)


def _stable_dense(rng, shape):
    N = shape[-1]
    A = rng.standard_normal(shape) / np.sqrt(N)
    return A - 1.5 * np.eye(N)


def _ref_dense(A, B, dt, rule):
    """Per-matrix float64 reference (A (N, N), B (N,), dt float)."""
    N = A.shape[0]
    I = np.eye(N)
    if rule == "zoh":
        Ab = scipy.linalg.expm(dt * A)
        return Ab, np.linalg.solve(A, (Ab - I) @ B)
    if rule == "bilinear":
        inv = np.linalg.inv(I - dt / 2 * A)
        return inv @ (I + dt / 2 * A), inv @ (dt * B)
    return I + dt * A, dt * B


DENSE = {"zoh": dz.zoh_dense, "bilinear": dz.bilinear_dense, "euler": dz.euler_dense}
DIAG = {"zoh": dz.zoh_diag, "bilinear": dz.bilinear_diag, "euler": dz.euler_diag}


# expm takes ~2 s to compile per shape on the CPU: ZOH gets fewer (shared) shapes.
DENSE_CASES = [(r, H, N) for r in ("bilinear", "euler") for H, N in [(None, 1), (None, 5), (3, 4), (2, 7)]]
DENSE_CASES += [("zoh", None, 1), ("zoh", 3, 4)]


@pytest.mark.parametrize("rule,H,N", DENSE_CASES)
def test_dense_against_reference(rule, H, N):
    rng = _rng(N)
    shape = (N, N) if H is None else (H, N, N)
    A = _stable_dense(rng, shape)
    B = rng.standard_normal(shape[:-1])
    dt = np.float32(0.3) if H is None else rng.uniform(0.05, 0.5, size=H)
    Ab, Bb = DENSE[rule](jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32), jnp.asarray(dt, jnp.float32))
    assert Ab.shape == shape and Bb.shape == shape[:-1] and Ab.dtype == jnp.float32
    A3, B3 = A.reshape((-1, N, N)), B.reshape((-1, N))
    dts = np.broadcast_to(dt, (A3.shape[0],))
    for h in range(A3.shape[0]):
        Ar, Br = _ref_dense(A3[h], B3[h], float(dts[h]), rule)
        np.testing.assert_allclose(np.asarray(Ab).reshape(A3.shape)[h], Ar, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(np.asarray(Bb).reshape(B3.shape)[h], Br, rtol=2e-5, atol=2e-6)


def test_dense_shared_A_per_channel_dt():
    rng = _rng(0)
    A = _stable_dense(rng, (4, 4))
    B = rng.standard_normal(4)
    dt = np.array([0.1, 0.2, 0.4])
    Ab, Bb = dz.zoh_dense(A.astype(np.float32), B.astype(np.float32), dt.astype(np.float32))
    assert Ab.shape == (3, 4, 4) and Bb.shape == (3, 4)
    for h in range(3):
        Ar, Br = _ref_dense(A, B, dt[h], "zoh")
        np.testing.assert_allclose(Ab[h], Ar, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(Bb[h], Br, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("rule", ["zoh", "bilinear", "euler"])
@pytest.mark.parametrize("H,N", [(1, 1), (3, 4), (2, 6)])
@pytest.mark.parametrize("complex_A", [False, True])
def test_diag_equals_dense_on_diag(rule, H, N, complex_A):
    rng = _rng(10 * H + N)
    A = -rng.uniform(0.1, 2.0, size=(H, N)) + (1j * rng.uniform(-5, 5, size=(H, N)) if complex_A else 0)
    B = rng.standard_normal((H, N)) + (1j * rng.standard_normal((H, N)) if complex_A else 0)
    dt = rng.uniform(0.01, 0.5, size=H)
    dtype = jnp.complex64 if complex_A else jnp.float32
    Ab, Bb = DIAG[rule](jnp.asarray(A, dtype), jnp.asarray(B, dtype), jnp.asarray(dt, jnp.float32))
    assert Ab.shape == (H, N) and Bb.shape == (H, N)
    for h in range(H):  # the float64 reference on the dense diag(A)
        Ar, Br = _ref_dense(np.diag(A[h]), B[h], dt[h], rule)
        np.testing.assert_allclose(Ab[h], np.diag(Ar), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(Bb[h], Br, rtol=2e-5, atol=2e-6)
    if rule == "zoh" and (H, N) != (3, 4):
        return  # expm compiles per shape (~2 s each): the jax dense ZOH on one shape only
    Ad, Bd = DENSE[rule](jax.vmap(jnp.diag)(jnp.asarray(A, dtype)), jnp.asarray(B, dtype), jnp.asarray(dt, jnp.float32))
    np.testing.assert_allclose(Ab, jnp.diagonal(Ad, axis1=-2, axis2=-1), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(Bb, Bd, rtol=2e-5, atol=2e-6)


def test_diag_dt_shapes_agree():
    rng = _rng(1)
    A = jnp.asarray(-rng.uniform(0.1, 1, (3, 4)) + 1j * rng.standard_normal((3, 4)), jnp.complex64)
    B = jnp.ones((3, 4), jnp.complex64)
    dt = jnp.asarray([0.1, 0.2, 0.3], jnp.float32)
    a1, b1 = dz.zoh_diag(A, B, dt)
    a2, b2 = dz.zoh_diag(A, B, dt[:, None])
    np.testing.assert_allclose(a1, a2)
    np.testing.assert_allclose(b1, b2)
    a3, _ = dz.zoh_diag(A, B, 0.2)
    np.testing.assert_allclose(a3[1], a1[1], rtol=1e-6)
    # A shared across channels, B per channel
    a4, b4 = dz.bilinear_diag(A[0], B, dt)
    assert a4.shape == (3, 4) and b4.shape == (3, 4)


def test_zoh_diag_at_zero_and_gradient_finite():
    A = jnp.array([0.0, -1e-6, -1.0], jnp.float32)
    B = jnp.ones(3, jnp.float32)
    _, Bb = dz.zoh_diag(A, B, 0.5)
    np.testing.assert_allclose(Bb, [0.5, 0.5, (1 - np.exp(-0.5))], rtol=1e-5)
    g = jax.grad(lambda a: jnp.sum(dz.zoh_diag(a, B, 0.5)[1]))(A)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[0], 0.5 * 0.5 / 2, rtol=1e-4)  # d/dA [dt phi(dt A)] = dt^2/2 at 0


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("conj_pairs", [True, False])
def test_bilinear_dplr_equals_dense(rank, conj_pairs):
    rng = _rng(rank)
    H, N2 = 3, 4
    Lam = -rng.uniform(0.2, 1, (H, N2)) + 1j * rng.uniform(0, 4, (H, N2))
    P = 0.5 * (rng.standard_normal((rank, H, N2)) + 1j * rng.standard_normal((rank, H, N2)))
    Q = 0.5 * (rng.standard_normal((rank, H, N2)) + 1j * rng.standard_normal((rank, H, N2)))
    B = rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2))
    dt = rng.uniform(0.05, 0.5, H)
    c = lambda x: jnp.asarray(x, jnp.complex64)
    Ab, Bb = dz.bilinear_dplr(c(Lam), c(P), c(Q), c(B), jnp.asarray(dt, jnp.float32), conj_pairs)
    M = 2 * N2 if conj_pairs else N2
    assert Ab.shape == (H, M, M) and Bb.shape == (H, M)
    A_dense = np.asarray(dz.dplr_dense(c(Lam), c(P), c(Q), conj_pairs))
    B_full = np.concatenate([B, B.conj()], -1) if conj_pairs else B
    for h in range(H):
        Ar, Br = _ref_dense(A_dense[h].astype(np.complex128), B_full[h], dt[h], "bilinear")
        np.testing.assert_allclose(Ab[h], Ar, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(Bb[h], Br, rtol=1e-4, atol=1e-5)


def test_bilinear_dplr_of_hippo_is_bilinear_of_hippo():
    N, H = 8, 2
    A, B = hippo.hippo("legs", N)
    Lam, P, Bh = hippo.dplr("legs", N)
    V_h = hippo.dplr_basis("legs", N)
    V = np.concatenate([V_h, V_h.conj()], 1)
    dt = np.array([0.05, 0.2])
    c = lambda x: jnp.asarray(np.broadcast_to(x, (H,) + x.shape[-1:]), jnp.complex64)
    Ab, Bb = dz.bilinear_dplr(Lam, c(P[0]), c(P[0]), c(Bh), jnp.asarray(dt, jnp.float32))
    for h in range(H):
        Ar, Br = _ref_dense(A, B, dt[h], "bilinear")
        np.testing.assert_allclose(V @ np.asarray(Ab[h]) @ V.conj().T, Ar, atol=5e-6)
        np.testing.assert_allclose(V @ np.asarray(Bb[h]), Br, atol=5e-6)


@pytest.mark.parametrize("rule", ["zoh", "bilinear", "euler"])
def test_jit_vmap_grad_dense(rule):
    fn = DENSE[rule]
    rng = _rng(2)
    A = jnp.asarray(_stable_dense(rng, (4, 3, 3)), jnp.float32)
    B = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    dt = jnp.asarray(rng.uniform(0.05, 0.3, 4), jnp.float32)
    a1, b1 = jax.jit(fn)(A, B, dt)
    a2, b2 = jax.jit(jax.vmap(fn))(A, B, dt)
    np.testing.assert_allclose(a1, a2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b2, rtol=1e-5, atol=1e-6)
    loss = lambda a, d: jnp.sum(jnp.sin(fn(a, B, d)[0])) + jnp.sum(fn(a, B, d)[1] ** 2)
    g = jax.jit(jax.grad(loss, argnums=(0, 1)))(A, dt)
    assert all(np.all(np.isfinite(x)) for x in g)
    # against central differences in dt, in float32: a loose but failing check
    eps = 1e-2
    num = (loss(A, dt + eps) - loss(A, dt - eps)) / (2 * eps)  # sum over channels
    np.testing.assert_allclose(jnp.sum(g[1]), num, rtol=2e-2)


@pytest.mark.parametrize("rule", ["zoh", "bilinear", "euler"])
def test_jit_vmap_grad_diag(rule):
    fn = DIAG[rule]
    rng = _rng(3)
    A = jnp.asarray(-rng.uniform(0.1, 1, (4, 3)) + 1j * rng.standard_normal((4, 3)), jnp.complex64)
    B = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    dt = jnp.asarray(rng.uniform(0.05, 0.3, 4), jnp.float32)
    a1, b1 = jax.jit(fn)(A, B, dt)
    a2, b2 = jax.vmap(fn)(A, B, dt)
    np.testing.assert_allclose(a1, a2, rtol=1e-6)
    np.testing.assert_allclose(b1, b2, rtol=1e-6)
    loss = lambda d: jnp.sum(jnp.abs(fn(A, B, d)[1]) ** 2) + jnp.sum(fn(A, B, d)[0].real)
    g = jax.grad(loss)(dt)
    assert np.all(np.isfinite(g))
    eps = 1e-2
    np.testing.assert_allclose(jnp.sum(g), (loss(dt + eps) - loss(dt - eps)) / (2 * eps), rtol=2e-2)


def test_bad_inputs_name_the_argument():
    A = jnp.ones((3, 4), jnp.float32)
    with pytest.raises(ValueError, match="B must have shape"):
        dz.zoh_diag(A, jnp.ones((3, 5)), 0.1)
    with pytest.raises(ValueError, match=r"dt must broadcast .* got shape \(4,\)"):
        dz.zoh_diag(A, A, jnp.ones(4))
    with pytest.raises(ValueError, match=r"dt must be a scalar, have shape \(3,\)"):
        dz.zoh_diag(A, A, jnp.ones((3, 4, 1)))
    with pytest.raises(TypeError, match="A must have a floating or complex dtype"):
        dz.bilinear_diag(jnp.ones((3, 4), jnp.int32), A, 0.1)
    with pytest.raises(TypeError, match="dt must have a floating dtype"):
        dz.euler_diag(A, A, jnp.ones(3, jnp.complex64))
    with pytest.raises(ValueError, match="A must have shape"):
        dz.zoh_dense(jnp.ones((3, 4)), jnp.ones(4), 0.1)
    with pytest.raises(ValueError, match="B must have shape"):
        dz.bilinear_dense(jnp.ones((4, 4)), jnp.ones(3), 0.1)
    with pytest.raises(ValueError, match="channel dimension"):
        dz.bilinear_dense(jnp.ones((2, 4, 4)), jnp.ones((3, 4)), 0.1)
    with pytest.raises(ValueError, match="P must have shape"):
        dz.bilinear_dplr(jnp.ones(4), jnp.ones((3, 5)), jnp.ones((3, 5)), jnp.ones((3, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match="dt must have shape"):
        dz.bilinear_dplr(jnp.ones(4), jnp.ones((3, 4)), jnp.ones((3, 4)), jnp.ones((3, 4)), jnp.ones(2))


def test_bilinear_dplr_gradients_match_dense():
    rng = _rng(7)
    H, N2, rank = 2, 3, 1
    c = lambda x: jnp.asarray(x, jnp.complex64)
    Lam = c(-rng.uniform(0.2, 1, (H, N2)) + 1j * rng.uniform(0, 4, (H, N2)))
    P = c(0.5 * (rng.standard_normal((rank, H, N2)) + 1j * rng.standard_normal((rank, H, N2))))
    B = c(rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2)))
    dt = jnp.asarray(rng.uniform(0.05, 0.5, H), jnp.float32)
    W = jnp.asarray(rng.standard_normal((H, 2 * N2, 2 * N2)), jnp.float32)

    def fast(lam, p, b, d):
        Ab, Bb = dz.bilinear_dplr(lam, p, p, b, d)
        return jnp.sum(W * Ab.real) + jnp.sum(jnp.abs(Bb) ** 2)

    def dense(lam, p, b, d):
        Ab, Bb = dz.bilinear_dense(dz.dplr_dense(lam, p, p), dz.conj_extend(b), d)
        return jnp.sum(W * Ab.real) + jnp.sum(jnp.abs(Bb) ** 2)

    g1 = jax.jit(jax.grad(fast, argnums=(0, 1, 2, 3)))(Lam, P, B, dt)
    g2 = jax.jit(jax.grad(dense, argnums=(0, 1, 2, 3)))(Lam, P, B, dt)
    for a, b in zip(g1, g2):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * max(1.0, float(jnp.abs(b).max())))
