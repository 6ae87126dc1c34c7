"""selective_scan (xla backend) against the sequential reference and a plain numpy loop
written in mamba_ssm's own (batch, D, L) layout."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_jax.ops import selective_scan, selective_scan_ref


def numpy_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Direct transcription of mamba_ssm's selective_scan_ref, (batch, D, L) inside, in float64."""
    f = lambda x: None if x is None else np.asarray(x, np.float64)
    u, delta, A, B, C, D, z, delta_bias = map(f, (u, delta, A, B, C, D, z, delta_bias))
    u, delta = np.swapaxes(u, 1, 2), np.swapaxes(delta, 1, 2)            # (b, D, L)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = np.log1p(np.exp(delta))
    batch, dim, length = u.shape
    if B.ndim == 3:
        B, C = B[:, :, None, :], C[:, :, None, :]
    groups = B.shape[2]
    x = np.zeros((batch, dim, A.shape[1]))
    ys = np.zeros((batch, dim, length))
    for t in range(length):
        for d in range(dim):
            g = d // (dim // groups)
            x[:, d] = np.exp(delta[:, d, t, None] * A[d]) * x[:, d] + delta[:, d, t, None] * B[:, t, g] * u[:, d, t, None]
            ys[:, d, t] = np.sum(x[:, d] * C[:, t, g], axis=-1)
    out = ys if D is None else ys + u * D[:, None]
    out = np.swapaxes(out, 1, 2)
    if z is not None:
        out = out / (1 + np.exp(-z)) * z
    return out, x


def make_inputs(key, batch, length, dim, n, groups=None, dtype=jnp.float32, extras=True):
    k = jax.random.split(key, 8)
    bc_shape = (batch, length, n) if groups is None else (batch, length, groups, n)
    args = dict(
        u=jax.random.normal(k[0], (batch, length, dim), dtype),
        delta=(0.5 * jax.random.normal(k[1], (batch, length, dim))).astype(dtype),
        A=-jnp.exp(jax.random.normal(k[2], (dim, n))),
        B=jax.random.normal(k[3], bc_shape, dtype),
        C=jax.random.normal(k[4], bc_shape, dtype),
    )
    if extras:
        args.update(D=jax.random.normal(k[5], (dim,)), z=jax.random.normal(k[6], (batch, length, dim), dtype),
                    delta_bias=0.1 * jax.random.normal(k[7], (dim,)))
    return args


SHAPES = [  # batch, L, D, N, groups
    (1, 1, 3, 2, None),
    (2, 13, 8, 4, None),
    (3, 29, 6, 16, 2),
    (1, 64, 4, 3, 4),
]


@pytest.mark.parametrize("batch,length,dim,n,groups", SHAPES)
@pytest.mark.parametrize("extras,softplus", [(False, False), (True, True)])
def test_xla_and_reference_match_numpy_loop(batch, length, dim, n, groups, extras, softplus):
    key = jax.random.PRNGKey(batch * 1000 + length * 10 + dim + int(extras))
    args = make_inputs(key, batch, length, dim, n, groups, extras=extras)
    want_y, want_h = numpy_loop(**args, delta_softplus=softplus)
    for backend_fn in (functools.partial(selective_scan, backend="xla"), selective_scan_ref):
        fn = jax.jit(functools.partial(backend_fn, delta_softplus=softplus, return_last_state=True))
        y, h = fn(**args)
        assert y.shape == (batch, length, dim) and y.dtype == jnp.float32
        assert h.shape == (batch, dim, n) and h.dtype == jnp.float32
        np.testing.assert_allclose(y, want_y, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(h, want_h, rtol=2e-4, atol=2e-4)


def test_bfloat16_inputs_keep_float32_state():
    args = make_inputs(jax.random.PRNGKey(7), 2, 33, 8, 4, dtype=jnp.bfloat16)
    y = selective_scan(**args, delta_softplus=True, backend="xla")
    assert y.dtype == jnp.bfloat16
    want, _ = numpy_loop(**args, delta_softplus=True)
    err = np.linalg.norm(np.asarray(y, np.float64) - want) / np.linalg.norm(want)
    assert err < 1e-2


@pytest.mark.parametrize("groups", [None, 2])
def test_gradients_xla_match_reference(groups):
    args = make_inputs(jax.random.PRNGKey(11), 2, 17, 4, 3, groups)
    names = list(args)
    w = jax.random.normal(jax.random.PRNGKey(12), (2, 17, 4))

    def loss(fn, *vals):
        return jnp.sum(fn(**dict(zip(names, vals)), delta_softplus=True) * w)

    argnums = tuple(range(len(names)))
    g_xla = jax.jit(jax.grad(lambda *v: loss(functools.partial(selective_scan, backend="xla"), *v), argnums))(*args.values())
    g_ref = jax.jit(jax.grad(lambda *v: loss(selective_scan_ref, *v), argnums))(*args.values())
    for name, a, b in zip(names, g_xla, g_ref):
        assert np.all(np.isfinite(a)), name
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=name)


def test_jit_and_vmap():
    args = make_inputs(jax.random.PRNGKey(3), 1, 9, 4, 2, extras=False)
    single = {k: v[0] for k, v in args.items() if k not in ("A",)}
    fn = jax.jit(jax.vmap(lambda u, delta, B, C: selective_scan(u[None], delta[None], args["A"], B[None], C[None],
                                                                 backend="xla")[0]))
    got = fn(single["u"][None], single["delta"][None], single["B"][None], single["C"][None])
    np.testing.assert_allclose(got, selective_scan_ref(**args), rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_naming_the_argument():
    args = make_inputs(jax.random.PRNGKey(0), 2, 5, 4, 3)
    cases = [
        ("u", jnp.ones((2, 5)), ValueError, "u must have shape"),
        ("delta", jnp.ones((2, 5, 3)), ValueError, "delta must have shape"),
        ("A", jnp.ones((5, 3)), ValueError, "A must have shape"),
        ("B", jnp.ones((2, 5, 2)), ValueError, "B must have shape"),
        ("C", jnp.ones((2, 5, 3, 3)), ValueError, "C has G=3 groups"),
        ("D", jnp.ones((3,)), ValueError, "D must have shape"),
        ("z", jnp.ones((2, 4, 4)), ValueError, "z must have shape"),
        ("delta_bias", jnp.ones((4, 1)), ValueError, "delta_bias must have shape"),
        ("u", jnp.ones((2, 5, 4), jnp.int32), TypeError, "u must have a floating"),
    ]
    for name, value, exc, msg in cases:
        bad = dict(args, **{name: value})
        with pytest.raises(exc, match=msg):
            selective_scan(**bad, backend="xla")
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(**args, backend="cuda")
