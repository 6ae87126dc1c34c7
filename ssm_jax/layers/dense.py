"""A dense-A SSM layer, for the HiPPO-against-random initialization ablation.

One state matrix A (N, N) shared by the H channels; per channel B, C (N,) and dt:

    A_bar[h], B_bar[h] = discretize(A, B[h], dt[h])      bilinear (S4/LSSL) or ZOH, dense
    K[k, h] = C[h] A_bar[h]^k B_bar[h]                    (``ssm_jax.kernels.kernel_dense``)
    y = K * u + D u;   step: x = A_bar x + B_bar u,  y = C x + D u

Init: ``init`` a HiPPO measure (A, B from ``ssm_jax.hippo.hippo``) or "random"
(``ssm_jax.hippo.random_dense``, a stable Gaussian A); C ~ N(0, 1); dt ~
log-uniform[dt_min, dt_max]; D ~ N(0, 1). Bidirectional: a second C gives the
anti-causal kernel, as in :class:`~ssm_jax.layers.s4.S4`.

SSMParam: A, B, C, C_bwd, log_dt, D; with ``trainable_A=False`` A is a
``FrozenSSMVariable`` (the "frozen A" arm of the ablation).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm_jax import _checks
from ssm_jax.discretize import bilinear_dense, zoh_dense
from ssm_jax.hippo import MEASURES, hippo, random_dense
from ssm_jax.kernels import kernel_dense
from ssm_jax.layers.common import check_step, log_uniform_dt, seed_from_key, ssm_variable
from ssm_jax.layers.convolutional import ConvolutionalSSM
from ssm_jax.layers.params import SSMParam

__all__ = ["DenseSSM", "DENSE_INITS"]

DENSE_INITS = MEASURES + ("random",)
_DISCRETIZE = {"bilinear": bilinear_dense, "zoh": zoh_dense}


class DenseSSM(ConvolutionalSSM):
    """Dense-A SSM layer (module docstring) on (batch, L, d_model).

    ``init``: "legs", "legt", "lagt", "fout" or "random"; ``discretization``:
    "bilinear" or "zoh"; ``trainable_A=False`` freezes A.
    """

    def __init__(self, d_model: int, *, d_state: int = 64, init: str = "legs",
                 discretization: str = "bilinear", bidirectional: bool = False,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, trainable_A: bool = True, rngs: nnx.Rngs):
        _checks.check_choice(init, "init", DENSE_INITS)
        _checks.check_choice(discretization, "discretization", list(_DISCRETIZE))
        if not isinstance(d_state, int) or d_state < 1:
            raise ValueError(f"d_state must be a positive int, got {d_state!r}")
        H, N = d_model, d_state
        self.d_model, self.d_state, self.discretization = d_model, d_state, discretization
        self.bidirectional = bool(bidirectional)
        key = rngs.params()  # a numpy seed only for the random init (needs a concrete key)
        A, B = random_dense(N, seed_from_key(key)) if init == "random" else hippo(init, N)
        self.A = ssm_variable(jnp.asarray(A, jnp.float32), trainable=trainable_A)
        self.B = SSMParam(jnp.broadcast_to(jnp.asarray(B, jnp.float32), (H, N)))
        self.C = SSMParam(jax.random.normal(rngs.params(), (H, N), jnp.float32))
        self.C_bwd = SSMParam(jax.random.normal(rngs.params(), (H, N), jnp.float32)) if bidirectional else None
        self.log_dt = SSMParam(jnp.log(log_uniform_dt(rngs.params(), (H,), dt_min, dt_max)))
        self.D = SSMParam(jax.random.normal(rngs.params(), (H,), jnp.float32))

    def discrete(self):
        """A_bar (H, N, N), B_bar (H, N)."""
        return _DISCRETIZE[self.discretization](self.A[...], self.B[...], jnp.exp(self.log_dt[...]))

    def kernel(self, L: int, backward: bool = False):
        """K (L, H) with C (or C_bwd)."""
        A_bar, B_bar = self.discrete()
        return kernel_dense(A_bar, B_bar, (self.C_bwd if backward else self.C)[...], L)

    def init_state(self, batch_size: int):
        """Zero state x (batch, H, N) float32."""
        return jnp.zeros((batch_size, self.d_model, self.d_state), jnp.float32)

    def step(self, state, u_t):
        """x = A_bar x + B_bar u_t;  y_t = C x + D u_t."""
        check_step(self, (self.d_model, self.d_state), state, u_t)
        A_bar, B_bar = self.discrete()
        x = jnp.einsum("hnm,bhm->bhn", A_bar, state) + B_bar * u_t[:, :, None]
        y = jnp.sum(self.C[...] * x, axis=-1)
        return x, (y + self.D[...] * u_t).astype(u_t.dtype)
