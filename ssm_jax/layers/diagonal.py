"""Diagonal linear time-invariant SSM layers: the generic :class:`DiagonalLayer` and S4D.

For each channel h of u (batch, L, H), a :class:`~ssm_jax.layers.variants.DiagonalSSM`
gives A_bar, B_bar, C (H, M); then

    x_k = A_bar x_{k-1} + B_bar u_k,    y_k = C x_k + D u_k      (2 Re(C x_k) with conj_pairs)

Whole sequence: the kernel K_k = C A_bar^k B_bar (``ssm_jax.kernels.kernel_diag``, (L, H);
``kernel_s4d``, powers as exp(k dt A), when the discretization is ZOH)
and an FFT convolution, y = K * u + D u (``causal_conv``). Step: the recurrence above.
Bidirectional: a second SSM of the same variant, run backwards (anti-causal kernel),
added to the forward one (``bidirectional_conv``); such a layer cannot step.

S4D (Gu et al. 2022, :func:`s4d_ssm`):

    A = -exp(log_A_real) + i A_imag    (n_ssm, N/2) copies, each for H / n_ssm channels
    B complex (n_ssm, N/2), C complex (H, N/2), stored as (..., 2) real pairs;
    B from the init, C ~ CN(0, 1)
    dt = exp(log_dt), dt ~ log-uniform[dt_min, dt_max];   ZOH;   D ~ N(0, 1)

All of log_A_real, A_imag, B, C, log_dt and D are ``SSMParam`` (with ``trainable_A=False``
log_A_real and A_imag are ``FrozenSSMVariable``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm_jax import _checks
from ssm_jax.discretize import zoh_diag
from ssm_jax.hippo import init_A
from ssm_jax.kernels import kernel_diag, kernel_s4d
from ssm_jax.layers.common import (
    as_complex, as_real_pair, check_n_ssm, check_step, log_uniform_dt, per_channel, read, seed_from_key,
    variant_variables)
from ssm_jax.layers.convolutional import ConvolutionalSSM
from ssm_jax.layers.params import SSMParam
from ssm_jax.layers.variants import DiagonalSSM

__all__ = ["DiagonalLayer", "S4D", "s4d_ssm", "S4D_INITS"]

# S4D's init names -> ssm_jax.hippo.init_A names (the init_A names are accepted too).
S4D_INITS = {
    "legs": "s4d_legs",
    "inv": "s4d_inv",
    "lin": "s4d_lin",
    "random_real": "random_diag_real",
    "random_complex": "random_diag_complex",
}


def s4d_ssm(init: str = "inv", dt_min: float = 1e-3, dt_max: float = 1e-1, seed: int = 0,
            n_ssm=1) -> DiagonalSSM:
    """S4D as a :class:`DiagonalSSM` (module docstring); ``seed`` feeds the random inits;
    ``n_ssm`` copies of (A, B) (None: one per channel), as in :class:`S4D`."""
    names = dict(S4D_INITS, **{v: v for v in S4D_INITS.values()})
    _checks.check_choice(init, "init", list(names))

    def init_fn(key, H, N):
        k_C, k_dt = jax.random.split(key)
        a, n = init_A(names[init], N, seed=seed), check_n_ssm(n_ssm, H)
        A = jnp.broadcast_to(jnp.asarray(a.A, jnp.complex64), (n, N // 2))
        B = jnp.broadcast_to(jnp.asarray(a.B, jnp.complex64), (n, N // 2))
        return {
            "log_A_real": jnp.log(-A.real),
            "A_imag": A.imag,
            "B": as_real_pair(B),
            "C": jax.random.normal(k_C, (H, N // 2, 2), jnp.float32) * 0.5 ** 0.5,
            "log_dt": jnp.log(log_uniform_dt(k_dt, (H,), dt_min, dt_max)),
        }

    return DiagonalSSM(
        init=init_fn,
        A=lambda p: per_channel(jax.lax.complex(-jnp.exp(p["log_A_real"]), p["A_imag"]), p["C"].shape[0]),
        B=lambda p: per_channel(as_complex(p["B"]), p["C"].shape[0]),
        C=lambda p: as_complex(p["C"]),
        A_keys=("log_A_real", "A_imag"),
    )


class DiagonalLayer(ConvolutionalSSM):
    """A :class:`DiagonalSSM` ``variant`` as a layer on (batch, L, d_model) (module docstring).

    ``__call__(u)``: (batch, L, H) -> (batch, L, H) by FFT convolution. ``init_state(b)``
    / ``step(state, u_t)``: u_t (b, H) -> y_t (b, H); the state x is (b, H, M).
    """

    def __init__(self, variant: DiagonalSSM, d_model: int, *, d_state: int = 64,
                 bidirectional: bool = False, trainable_A: bool = True, rngs: nnx.Rngs):
        if not isinstance(variant, DiagonalSSM):
            raise TypeError(f"variant must be a DiagonalSSM, got {type(variant).__name__}")
        for name, v in (("d_model", d_model), ("d_state", d_state)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        variant.check(d_model, d_state)
        self.variant, self.d_model, self.d_state = variant, d_model, d_state
        self.bidirectional = bool(bidirectional)

        def make_ssm():
            return variant_variables(variant, variant.init(rngs.params(), d_model, d_state), trainable_A)

        self.ssm = make_ssm()
        self.ssm_bwd = make_ssm() if bidirectional else None
        self.D = SSMParam(jax.random.normal(rngs.params(), (d_model,), jnp.float32))

    def continuous(self, backward: bool = False):
        """(A, B, C (H, M), dt (H,)) of the forward (or backward) SSM."""
        p = read(self.ssm_bwd if backward else self.ssm)
        v = self.variant
        return v.A(p), v.B(p), v.C(p), v.dt(p)

    def discrete(self, backward: bool = False):
        """(A_bar, B_bar, C), each (H, M), of the forward (or backward) SSM."""
        A, B, C, dt = self.continuous(backward)
        return (*self.variant.discretize(A, B, dt), C)

    def kernel(self, L: int, backward: bool = False):
        """The convolution kernel K_k = C A_bar^k B_bar, (L, H).

        With ZOH the powers are exp(k dt A) (``kernel_s4d``: parallel, and accurate at long
        L); any other discretization takes the generic Vandermonde ``kernel_diag``.
        """
        if self.variant.discretize is zoh_diag:
            return kernel_s4d(*self.continuous(backward), L, conj_pairs=self.variant.conj_pairs)
        return kernel_diag(*self.discrete(backward), L, conj_pairs=self.variant.conj_pairs)

    def init_state(self, batch_size: int):
        """Zero state x (batch, H, M), complex or real as the discretization."""
        A_bar = jax.eval_shape(self.discrete)[0]
        return jnp.zeros((batch_size,) + A_bar.shape, A_bar.dtype)

    def step(self, state, u_t):
        """x = A_bar x + B_bar u_t;  y_t = C x (2 Re(C x) with conj_pairs) + D u_t."""
        A_bar, B_bar, C = self.discrete()
        check_step(self, A_bar.shape, state, u_t)
        x = A_bar * state + B_bar * u_t[:, :, None]
        y = jnp.sum(C * x, axis=-1).real * (2.0 if self.variant.conj_pairs else 1.0)
        return x, (y + self.D[...] * u_t).astype(u_t.dtype)


class S4D(DiagonalLayer):
    """S4D (module docstring): ``init`` one of "inv", "lin", "legs", "random_real",
    "random_complex" (or the ``ssm_jax.hippo.init_A`` names of the diagonal inits).
    ``n_ssm``: independent (A, B) copies, each shared by d_model / n_ssm consecutive
    channels (default 1, as S4's configs; None: one per channel); C, dt, D per channel.
    """

    def __init__(self, d_model: int, *, d_state: int = 64, init: str = "inv", bidirectional: bool = False,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, n_ssm=1, trainable_A: bool = True,
                 rngs: nnx.Rngs):
        check_n_ssm(n_ssm, d_model)
        key = rngs.params()  # a numpy seed only for the random inits (needs a concrete key)
        seed = seed_from_key(key) if "random" in init else 0
        variant = s4d_ssm(init, dt_min, dt_max, seed=seed, n_ssm=n_ssm)
        super().__init__(variant, d_model, d_state=d_state, bidirectional=bidirectional,
                         trainable_A=trainable_A, rngs=rngs)
