"""The S4 layer: a diagonal plus low-rank (DPLR) SSM per channel (Gu et al. 2022).

For each channel h (H = d_model), with N2 = N/2 conjugate-pair halves:

    A = diag(Lambda) - P P^*        Lambda = -exp(log_A_real) + i A_imag    (H, N2)
    A_bar, B_bar = bilinear(A, B, dt),  dt = exp(log_dt)                   (dense, 2 N2 states)
    K = IFFT(C~ (I - A_bar z)^{-1} B_bar)   at the roots of unity          (L, H)
    y = K * u + D u

C~ = C (I - A_bar^l) is S4's parameterization of C (``C`` holds C~), for the kernel
length l = ``l_max`` (or the input length when ``l_max`` is None); the step mode
recovers C from it (``ssm_jax.kernels.dplr_c_from_tilde``) and runs the dense bilinear
recurrence x = A_bar x + B_bar u, y = 2 Re(C x) + D u. The init is the DPLR form of a
HiPPO matrix (``ssm_jax.hippo.dplr``), the same for every channel; C ~ CN(0, 1);
dt ~ log-uniform[dt_min, dt_max]. Bidirectional: a second C~ gives the anti-causal kernel
(``bidirectional_conv``), as S4's ``channels=2``.

SSMParam: log_A_real, A_imag, P (A), B, C (C~), C_bwd, log_dt, D. With
``trainable_A=False``, log_A_real, A_imag and P are ``FrozenSSMVariable``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm_jax import _checks
from ssm_jax.discretize import bilinear_dplr, conj_extend
from ssm_jax.hippo import MEASURES, dplr
from ssm_jax.kernels import dplr_c_from_tilde, kernel_dplr
from ssm_jax.layers.common import (
    as_complex, as_real_pair, check_n_ssm, check_step, log_uniform_dt, per_channel, ssm_variable)
from ssm_jax.layers.convolutional import ConvolutionalSSM
from ssm_jax.layers.params import SSMParam

__all__ = ["S4"]


class S4(ConvolutionalSSM):
    """S4 (module docstring) on (batch, L, d_model).

    ``init``: a HiPPO measure ("legs", "legt", "lagt", "fout"; legt needs ``rank=2``).
    ``l_max``: the kernel length C~ refers to; inputs may be shorter (the kernel is
    truncated). None: the input's length (then ``step`` needs ``l_max`` set).
    ``n_ssm``: number of independent (Lambda, P, B) copies, each shared by d_model / n_ssm
    consecutive channels (S4's ``n_ssm``; the default 1, as S4's configs, ties them across
    channels). None: one per channel. C, dt and D are always per channel.
    """

    def __init__(self, d_model: int, *, d_state: int = 64, init: str = "legs", rank: int = 1,
                 bidirectional: bool = False, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 l_max=None, n_ssm=1, trainable_A: bool = True, rngs: nnx.Rngs):
        _checks.check_choice(init, "init", MEASURES)
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even int >= 2 (conjugate pairs), got {d_state!r}")
        if l_max is not None and (not isinstance(l_max, int) or l_max < 1):
            raise ValueError(f"l_max must be None or a positive int, got {l_max!r}")
        n_ssm = check_n_ssm(n_ssm, d_model)
        H, N2 = d_model, d_state // 2
        self.d_model, self.d_state, self.l_max = d_model, d_state, l_max
        self.bidirectional = bool(bidirectional)
        Lambda, P, B = (jnp.asarray(x, jnp.complex64) for x in dplr(init, d_state, rank))
        Lambda = jnp.broadcast_to(Lambda, (n_ssm, N2))
        self.log_A_real = ssm_variable(jnp.log(-Lambda.real), trainable=trainable_A)
        self.A_imag = ssm_variable(Lambda.imag, trainable=trainable_A)
        self.P = ssm_variable(as_real_pair(jnp.broadcast_to(P[:, None, :], (P.shape[0], n_ssm, N2))),
                              trainable=trainable_A)
        self.B = SSMParam(as_real_pair(jnp.broadcast_to(B, (n_ssm, N2))))
        self.C = SSMParam(jax.random.normal(rngs.params(), (H, N2, 2), jnp.float32) * 0.5 ** 0.5)
        self.C_bwd = (SSMParam(jax.random.normal(rngs.params(), (H, N2, 2), jnp.float32) * 0.5 ** 0.5)
                      if bidirectional else None)
        self.log_dt = SSMParam(jnp.log(log_uniform_dt(rngs.params(), (H,), dt_min, dt_max)))
        self.D = SSMParam(jax.random.normal(rngs.params(), (H,), jnp.float32))

    def continuous(self):
        """(Lambda (H, N2), P (rank, H, N2), B (H, N2), dt (H,)) of the continuous system
        (the n_ssm copies of Lambda, P, B repeated over their channels)."""
        H = self.d_model
        Lambda = per_channel(jax.lax.complex(-jnp.exp(self.log_A_real[...]), self.A_imag[...]), H)
        P = per_channel(as_complex(self.P[...]), H, axis=1)
        return Lambda, P, per_channel(as_complex(self.B[...]), H), jnp.exp(self.log_dt[...])

    def kernel(self, L: int, backward: bool = False):
        """The convolution kernel (L, H), from C~ (or C~_bwd) at length l_max (or L)."""
        length = L if self.l_max is None else self.l_max
        if L > length:
            raise ValueError(f"input length {L} exceeds l_max={self.l_max}; build S4 with a larger l_max")
        Lambda, P, B, dt = self.continuous()
        C = as_complex((self.C_bwd if backward else self.C)[...])
        return kernel_dplr(Lambda, P, P, B, C, dt, length)[:L]

    def recurrence(self):
        """Dense (A_bar (H, N, N), B_bar (H, N), C (H, N)) of the conjugate-extended system."""
        if self.l_max is None:
            raise ValueError("S4.step needs l_max (the kernel length that C~ refers to); "
                             "build S4 with l_max=<sequence length>")
        Lambda, P, B, dt = self.continuous()
        A_bar, B_bar = bilinear_dplr(Lambda, P, P, B, dt)
        C = dplr_c_from_tilde(Lambda, P, P, as_complex(self.C[...]), dt, self.l_max)
        return A_bar, B_bar, conj_extend(C)

    def init_state(self, batch_size: int):
        """Zero state x (batch, H, N) complex64 (conjugate-extended)."""
        return jnp.zeros((batch_size, self.d_model, self.d_state), jnp.complex64)

    def step(self, state, u_t):
        """x = A_bar x + B_bar u_t;  y_t = Re(C x) + D u_t  (x holds both halves of each pair)."""
        check_step(self, (self.d_model, self.d_state), state, u_t)
        A_bar, B_bar, C = self.recurrence()
        x = jnp.einsum("hnm,bhm->bhn", A_bar, state) + B_bar * u_t[:, :, None]
        y = jnp.sum(C * x, axis=-1).real
        return x, (y + self.D[...] * u_t).astype(u_t.dtype)
