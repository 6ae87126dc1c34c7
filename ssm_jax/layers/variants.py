"""SSM variants: a new state space model written as the few pure functions that differ.

A variant is a frozen dataclass of pure functions; a generic layer turns it into both
modes (whole sequence and recurrent ``step``). Two forms:

:class:`DiagonalSSM`, linear time-invariant with diagonal A, one system per channel
(H channels, state size N)::

    A, B, C = A(p), B(p), C(p)                (H, M) each, M = N/2 if conj_pairs else N
    dt = dt(p)                                (H,)
    A_bar, B_bar = discretize(A, B, dt)       (H, M) each
    x_k = A_bar x_{k-1} + B_bar u_k,  y_k = C x_k    (2 Re(C x_k) if conj_pairs)

The layer computes the convolution kernel K_k = C A_bar^k B_bar (Vandermonde,
``ssm_jax.kernels.kernel_diag``) and the FFT convolution for ``__call__``, and the
recurrence for ``step`` (:class:`ssm_jax.layers.diagonal.DiagonalLayer`).

:class:`SelectiveSSM`, input-dependent (Mamba-style), D channels, state size N::

    delta, B, C = select(p, u)                (b, L, D), (b, L, N), (b, L, N)
    A_bar, Bu_bar = discretize(delta, A(p), B, u)        (b, L, D, N) each
    h_t = A_bar_t * h_{t-1} + Bu_bar_t,  y_t = sum_n C_t[n] h_t[:, n]

With ``discretize="zoh"`` (Mamba's A_bar = exp(delta A), Bu_bar = delta B u) the layer
calls :func:`ssm_jax.ops.selective_scan`, and so the fused kernel on GPU; a callable
takes the generic :func:`ssm_jax.scan.linear_scan` path
(:class:`ssm_jax.layers.selective.SelectiveLayer`).

``init(key, channels, N) -> dict[str, Array]`` makes the parameters. They are SSM
parameters (``SSMParam``: own learning rate, no weight decay) except the names listed in
``weight_keys`` (ordinary ``nnx.Param``); the names in ``A_keys`` are frozen when a layer
is built with ``trainable_A=False``. The skip term D (per channel) belongs to the layer.

A malformed variant gets an error naming the piece and what was expected: non-callable
pieces when the dataclass is built, wrong shapes when a layer is built (shapes are checked
with ``jax.eval_shape``: nothing is compiled or run).

Example, S4D with the bilinear transform instead of ZOH::

    import dataclasses
    from ssm_jax.discretize import bilinear_diag
    from ssm_jax.layers import SelectiveSSM, make_layer, register, s4d_ssm
    register("s4d_bilinear", dataclasses.replace(s4d_ssm("lin"), discretize=bilinear_diag))

and a selective SSM whose step size is the input itself (through softplus), with forward
Euler instead of ZOH (so it takes the ``linear_scan`` path)::

    def init(key, D, N):
        k1, k2 = jax.random.split(key)
        return {"A_log": jnp.zeros((D, N)), "delta_bias": jnp.full((D,), -2.0),
                "W_B": jax.random.normal(k1, (D, N)) / D ** 0.5,
                "W_C": jax.random.normal(k2, (D, N)) / D ** 0.5}

    register("euler_ssm", SelectiveSSM(
        init=init, A=lambda p: -jnp.exp(p["A_log"]),
        select=lambda p, u: (u, u @ p["W_B"], u @ p["W_C"]),
        discretize=lambda delta, A, B, u: (1 + delta[..., None] * A,
                                           (delta * u)[..., None] * B[:, :, None, :]),
        delta_softplus=True, A_keys=("A_log",), weight_keys=("W_B", "W_C")))

    layer = make_layer("euler_ssm", 64, d_state=16, rngs=nnx.Rngs(0))   # the Mamba block around it
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Union

import jax
import jax.numpy as jnp

from ssm_jax.discretize import zoh_diag

__all__ = [
    "DiagonalSSM",
    "SelectiveSSM",
    "zoh_selective",
    "VariantError",
]


class VariantError(ValueError):
    """A variant's piece is malformed (not callable, wrong output shape or dtype)."""


def _param(name: str) -> Callable:
    def get(params):
        return params[name]

    get.__name__ = f"params[{name!r}]"
    return get


def _exp_log_dt(params):
    return jnp.exp(params["log_dt"])


def zoh_selective(delta, A, B, u):
    """Mamba's discretization: A_bar = exp(delta A), Bu_bar = delta B u.

    delta, u: (b, L, D); A: (D, N); B: (b, L, N). Returns A_bar, Bu_bar (b, L, D, N).
    """
    A_bar = jnp.exp(delta[..., None] * A)
    Bu_bar = (delta * u)[..., None] * B[:, :, None, :]
    return A_bar, Bu_bar


def _check_callables(variant, names):
    kind = type(variant).__name__
    for name in names:
        piece = getattr(variant, name)
        if not callable(piece):
            raise VariantError(f"{kind}.{name} must be callable, got {type(piece).__name__} {piece!r}")


def _check_keys(variant, field, params):
    kind = type(variant).__name__
    for key in getattr(variant, field):
        if key not in params:
            raise VariantError(
                f"{kind}.{field} names {key!r}, which {kind}.init does not return "
                f"(it returns {sorted(params)})")


def _eval(variant, name, expected, *args):
    """Shapes of ``variant.name(*args)`` by ``jax.eval_shape``; errors name the piece."""
    kind = type(variant).__name__
    try:
        return jax.eval_shape(getattr(variant, name), *args)
    except Exception as e:  # the user's function failed on abstract inputs of the right shapes
        raise VariantError(f"{kind}.{name} failed (expected {expected}): {type(e).__name__}: {e}") from e


def _expect(variant, name, got, shape, expected, complex_ok=True):
    kind = type(variant).__name__
    if not hasattr(got, "shape") or tuple(got.shape) != tuple(shape):
        got_s = tuple(got.shape) if hasattr(got, "shape") else type(got).__name__
        raise VariantError(f"{kind}.{name} must return {expected} = {tuple(shape)}, got {got_s}")
    is_float = jnp.issubdtype(got.dtype, jnp.floating)
    if not (is_float or (complex_ok and jnp.issubdtype(got.dtype, jnp.complexfloating))):
        kinds = "a float or complex" if complex_ok else "a real float"
        raise VariantError(f"{kind}.{name} must return {kinds} array, got dtype {got.dtype}")


def _eval_init(variant, channels, N):
    kind = type(variant).__name__
    try:  # channels and N stay Python ints (static), only the key is abstract
        params = jax.eval_shape(lambda key: variant.init(key, channels, N), jax.random.PRNGKey(0))
    except Exception as e:
        raise VariantError(f"{kind}.init failed (expected (key, channels, N) -> dict of arrays): "
                           f"{type(e).__name__}: {e}") from e
    if not isinstance(params, dict) or not params:
        raise VariantError(f"{kind}.init must return a non-empty dict of arrays, got {type(params).__name__}")
    for key, value in params.items():
        if not hasattr(value, "shape"):
            raise VariantError(f"{kind}.init must return arrays; params[{key!r}] is {type(value).__name__}")
    return params


@dataclasses.dataclass(frozen=True)
class DiagonalSSM:
    """A linear time-invariant diagonal SSM (see the module docstring for the equations).

    Fields:
      init: ``(key, H, N) -> dict[str, Array]``, the SSM parameters.
      A: ``params -> (H, M)`` continuous-time diagonal of A (M = N/2 if conj_pairs else N).
      B, C: ``params -> (H, M)``; default ``params["B"]``, ``params["C"]``.
      dt: ``params -> (H,)`` positive step sizes; default ``exp(params["log_dt"])``.
      discretize: ``(A, B, dt) -> (A_bar, B_bar)``, (H, M) each; default ZOH
        (``ssm_jax.discretize.zoh_diag``).
      conj_pairs: the M complex modes stand for 2M real states (each with its conjugate),
        so y = 2 Re(C x).
      A_keys: the params that parameterize A (held fixed with ``trainable_A=False``).
    """

    init: Callable
    A: Callable
    B: Callable = _param("B")
    C: Callable = _param("C")
    dt: Callable = _exp_log_dt
    discretize: Callable = zoh_diag
    conj_pairs: bool = True
    A_keys: tuple = ()
    weight_keys = ()

    def __post_init__(self):
        _check_callables(self, ("init", "A", "B", "C", "dt", "discretize"))
        object.__setattr__(self, "A_keys", tuple(self.A_keys))

    def modes(self, N: int) -> int:
        """Number of stored modes M for state size N."""
        if self.conj_pairs and N % 2:
            raise VariantError(f"d_state must be even for a conj_pairs DiagonalSSM, got {N}")
        return N // 2 if self.conj_pairs else N

    def check(self, H: int, N: int) -> None:
        """Raise :class:`VariantError` unless every piece has the documented shapes."""
        M = self.modes(N)
        params = _eval_init(self, H, N)
        _check_keys(self, "A_keys", params)
        out = {}
        for name in ("A", "B", "C"):
            out[name] = _eval(self, name, f"params -> (H, M) = ({H}, {M})", params)
            _expect(self, name, out[name], (H, M), "(H, M)")
        dt = _eval(self, "dt", f"params -> (H,) = ({H},)", params)
        _expect(self, "dt", dt, (H,), "(H,)", complex_ok=False)
        bars = _eval(self, "discretize", "(A, B, dt) -> (A_bar, B_bar)", out["A"], out["B"], dt)
        if not isinstance(bars, (tuple, list)) or len(bars) != 2:
            raise VariantError(f"DiagonalSSM.discretize must return a pair (A_bar, B_bar), got {bars}")
        for name, got in zip(("discretize -> A_bar", "discretize -> B_bar"), bars):
            _expect(self, name, got, (H, M), "(H, M)")


@dataclasses.dataclass(frozen=True)
class SelectiveSSM:
    """A selective (input-dependent) SSM (see the module docstring for the equations).

    Fields:
      init: ``(key, D, N) -> dict[str, Array]``, the parameters.
      A: ``params -> (D, N)`` real, continuous-time (negative for stability).
      select: ``(params, u) -> (delta, B, C)``; u (b, L, D) -> (b, L, D), (b, L, N), (b, L, N).
      discretize: ``"zoh"`` (routes to ``ssm_jax.ops.selective_scan``, fused on GPU) or
        ``(delta, A, B, u) -> (A_bar, Bu_bar)``, (b, L, D, N) each (``linear_scan`` path).
      delta_softplus: the library applies delta = softplus(delta + params["delta_bias"])
        (the bias only if init returns one); on the "zoh" path the kernel fuses it.
      A_keys: the params that parameterize A (held fixed with ``trainable_A=False``).
      weight_keys: params that are ordinary weights (``nnx.Param``), not SSM parameters.
    """

    init: Callable
    A: Callable
    select: Callable
    discretize: Union[str, Callable] = "zoh"
    delta_softplus: bool = False
    A_keys: tuple = ()
    weight_keys: tuple = ()

    def __post_init__(self):
        _check_callables(self, ("init", "A", "select"))
        if not (self.discretize == "zoh" or callable(self.discretize)):
            raise VariantError(
                "SelectiveSSM.discretize must be 'zoh' or a callable (delta, A, B, u) -> "
                f"(A_bar, Bu_bar), got {self.discretize!r}")
        object.__setattr__(self, "A_keys", tuple(self.A_keys))
        object.__setattr__(self, "weight_keys", tuple(self.weight_keys))

    @property
    def discretize_fn(self) -> Callable:
        """The discretization as a function (``zoh_selective`` for "zoh")."""
        return zoh_selective if self.discretize == "zoh" else self.discretize

    def check(self, D: int, N: int) -> None:
        """Raise :class:`VariantError` unless every piece has the documented shapes."""
        params = _eval_init(self, D, N)
        _check_keys(self, "A_keys", params)
        _check_keys(self, "weight_keys", params)
        A = _eval(self, "A", f"params -> (D, N) = ({D}, {N})", params)
        _expect(self, "A", A, (D, N), "(D, N)", complex_ok=False)
        b, L = 2, 3
        u = jax.ShapeDtypeStruct((b, L, D), jnp.float32)
        out = _eval(self, "select", "(params, u) -> (delta, B, C)", params, u)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise VariantError(f"SelectiveSSM.select must return a triple (delta, B, C), got {out}")
        delta, B, _ = out
        for name, got, shape, expected in zip(
                ("select -> delta", "select -> B", "select -> C"), out,
                ((b, L, D), (b, L, N), (b, L, N)), ("(b, L, D)", "(b, L, N)", "(b, L, N)")):
            _expect(self, name, got, shape, expected, complex_ok=False)
        if self.discretize == "zoh":
            return
        bars = _eval(self, "discretize", "(delta, A, B, u) -> (A_bar, Bu_bar)", delta, A, B, u)
        if not isinstance(bars, (tuple, list)) or len(bars) != 2:
            raise VariantError(f"SelectiveSSM.discretize must return a pair (A_bar, Bu_bar), got {bars}")
        for name, got in zip(("discretize -> A_bar", "discretize -> Bu_bar"), bars):
            _expect(self, name, got, (b, L, D, N), "(b, L, D, N)", complex_ok=False)
