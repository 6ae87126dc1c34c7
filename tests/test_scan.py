"""linear_scan (associative) against the sequential reference and a plain numpy loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax import scan

# jit once per shape: eager dispatch of the associative scan's many small ops is slow.
linear_scan = jax.jit(scan.linear_scan, static_argnames=("axis", "reverse"))
linear_scan_ref = jax.jit(scan.linear_scan_ref, static_argnames=("axis", "reverse"))
linear_scan_chunked = jax.jit(scan.linear_scan_chunked, static_argnames=("chunk_size", "axis", "reverse"))


def numpy_loop(a, b, axis, reverse, h0):
    a = np.broadcast_to(a, b.shape)
    a_t, b_t = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    h = np.zeros(b_t.shape[1:], b.dtype) if h0 is None else np.array(h0)
    out = np.zeros_like(b_t)
    order = range(b_t.shape[0] - 1, -1, -1) if reverse else range(b_t.shape[0])
    for t in order:
        h = a_t[t] * h + b_t[t]
        out[t] = h
    return np.moveaxis(out, 0, axis)


def _random(key, b_shape, a_shape, complex_=False):
    ka, kb, kh, ki = jax.random.split(key, 4)
    a = jax.random.uniform(ka, a_shape, minval=0.5, maxval=1.0)
    b = jax.random.normal(kb, b_shape)
    if complex_:
        a = a * jnp.exp(1j * jax.random.uniform(ki, a_shape))
        b = b + 1j * jax.random.normal(kh, b_shape)
    return np.asarray(a), np.asarray(b)


CASES = [
    # b shape, a shape, axis
    ((17,), (17,), 0),
    ((1, 3), (1, 3), 0),
    ((2, 31, 4), (2, 31, 4), 1),
    ((2, 31, 4), (1, 31, 4), 1),      # a broadcast over batch
    ((5, 8, 3), (1, 8, 1), 1),
    ((4, 6, 13), (4, 6, 13), -1),
    ((6, 4), (1, 4), 0),              # time-invariant a (length-1 time axis)
]


@pytest.mark.parametrize("b_shape,a_shape,axis", CASES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_associative_matches_sequential_and_loop(b_shape, a_shape, axis, reverse, with_h0):
    key = jax.random.PRNGKey(hash((b_shape, a_shape, axis, reverse, with_h0)) % 2**31)
    a, b = _random(key, b_shape, a_shape)
    h0 = None
    if with_h0:
        ax = axis % len(b_shape)
        h0 = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), b_shape[:ax] + b_shape[ax + 1:]))
    want = numpy_loop(a, b, axis % len(b_shape), reverse, h0)
    for fn in (linear_scan, linear_scan_ref):
        got = fn(a, b, axis=axis, reverse=reverse, h0=h0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for chunk in (1, 4) if len(b_shape) > 1 else (1, 4, 64):
        got = linear_scan_chunked(a, b, chunk_size=chunk, axis=axis, reverse=reverse, h0=h0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_complex_values():
    a, b = _random(jax.random.PRNGKey(3), (3, 20, 5), (3, 20, 5), complex_=True)
    want = numpy_loop(a, b, 1, False, None)
    np.testing.assert_allclose(linear_scan(a, b, axis=1), want, rtol=1e-5, atol=1e-5)


def test_gradients_match_reference():
    a, b = _random(jax.random.PRNGKey(4), (2, 19, 3), (2, 19, 3))
    w = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (2, 19, 3)))

    def loss(fn, a, b):
        return jnp.sum(fn(a, b, axis=1) * w)

    ga = jax.grad(lambda a, b: loss(linear_scan, a, b), argnums=(0, 1))(a, b)
    gr = jax.grad(lambda a, b: loss(linear_scan_ref, a, b), argnums=(0, 1))(a, b)
    for x, y in zip(ga, gr):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        assert np.all(np.isfinite(x))


def test_jit_and_vmap():
    a, b = _random(jax.random.PRNGKey(6), (4, 12, 3), (4, 12, 3))
    got = jax.jit(jax.vmap(lambda a, b: linear_scan(a, b, axis=0)))(a, b)
    np.testing.assert_allclose(got, numpy_loop(a, b, 1, False, None), rtol=1e-5, atol=1e-5)


def test_errors_name_the_argument():
    b = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="a must have the same number of dimensions"):
        linear_scan(np.ones((4,), np.float32), b)
    with pytest.raises(ValueError, match="a must broadcast"):
        linear_scan(np.ones((2, 4), np.float32), b)
    with pytest.raises(ValueError, match="h0 must have shape"):
        linear_scan(b, b, h0=np.ones((3,), np.float32))
    with pytest.raises(TypeError, match="b must have a floating"):
        linear_scan(b, np.ones((3, 4), np.int32))
    with pytest.raises(ValueError, match="axis"):
        linear_scan(b, b, axis=2)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_scan_chunked(b, b, chunk_size=0)
