"""The Mamba block around a selective SSM variant, and the built-in Mamba.

Block (Gu & Dao 2023, Fig. 3), u (batch, L, d_model), d_inner = expand * d_model:

    x, z = split(u W_in)                            (b, L, d_inner) each
    x    = silu(causal_depthwise_conv1d(x))         kernel d_conv, per channel
    y    = SSM(x) + D * x                           the variant's selective scan
    out  = (y * silu(z)) W_out                      (b, L, d_model)

Mamba's SSM (:func:`mamba_ssm`), with dt_rank R:

    x W_x = [dt_in, B, C]   (R, N, N);   delta = softplus(dt_in W_dt + delta_bias)
    A = -exp(A_log),  A_log[d, n] = log(n + 1)      (S4D-Real)
    delta_bias = softplus^{-1}(dt),  dt ~ log-uniform[dt_min, dt_max], floored at dt_init_floor

Parameter kinds (as the Mamba repository's ``_no_weight_decay``): ``A_log`` and ``D`` are
``SSMParam``; x_proj (W_x), dt_proj (W_dt), delta_bias, the convolution and the in/out
projections are ordinary ``nnx.Param``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels.selective_scan.reference import finish_output
from ssm_jax import _checks
from ssm_jax.layers.common import check_sequence, inverse_softplus, log_uniform_dt, read, variant_variables
from ssm_jax.layers.params import SSMParam
from ssm_jax.layers.variants import SelectiveSSM
from ssm_jax.ops.selective_scan import BACKENDS, selective_scan
from ssm_jax.scan import linear_scan

__all__ = ["SelectiveLayer", "Mamba", "mamba_ssm", "causal_depthwise_conv"]


def causal_depthwise_conv(x, weight, bias):
    """y_t = bias + sum_k weight[k] * x_{t - K + 1 + k} (zeros before the start).

    x: (b, L, D); weight: (K, D); bias: (D,). Returns (b, L, D).
    """
    K, L = weight.shape[0], x.shape[1]
    xp = jnp.pad(x, ((0, 0), (K - 1, 0), (0, 0)))
    return bias + sum(weight[k] * xp[:, k:k + L] for k in range(K))


def mamba_ssm(dt_rank: int, dt_min: float = 1e-3, dt_max: float = 1e-1,
              dt_init_floor: float = 1e-4, dt_scale: float = 1.0) -> SelectiveSSM:
    """Mamba's selective SSM as a :class:`SelectiveSSM` (see the module docstring)."""

    def init(key, D, N):
        k_x, k_dt, k_bias = jax.random.split(key, 3)
        lim_x, lim_dt = D ** -0.5, dt_rank ** -0.5 * dt_scale
        dt = jnp.maximum(log_uniform_dt(k_bias, (D,), dt_min, dt_max), dt_init_floor)
        return {
            "A_log": jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=jnp.float32), (D, N))),
            "x_proj": jax.random.uniform(k_x, (D, dt_rank + 2 * N), jnp.float32, -lim_x, lim_x),
            "dt_proj": jax.random.uniform(k_dt, (dt_rank, D), jnp.float32, -lim_dt, lim_dt),
            "delta_bias": inverse_softplus(dt),
        }

    def select(p, u):
        N = (p["x_proj"].shape[1] - dt_rank) // 2
        dt_in, B, C = jnp.split(u @ p["x_proj"], [dt_rank, dt_rank + N], axis=-1)
        return dt_in @ p["dt_proj"], B, C

    return SelectiveSSM(
        init=init, A=lambda p: -jnp.exp(p["A_log"]), select=select, discretize="zoh",
        delta_softplus=True, A_keys=("A_log",), weight_keys=("x_proj", "dt_proj", "delta_bias"))


class SelectiveLayer(nnx.Module):
    """The Mamba block (module docstring) around any :class:`SelectiveSSM` ``variant``.

    ``__call__(u)``: (batch, L, d_model) -> (batch, L, d_model). ``init_state(batch)`` /
    ``step(state, u_t)``: u_t (batch, d_model) -> y_t (batch, d_model), the same outputs
    one step at a time; the state is (conv window (b, d_conv - 1, d_inner), h (b, d_inner, N)).
    ``backend`` is passed to ``selective_scan`` (``"auto"``: fused Pallas kernel on GPU), and
    ``pallas_options`` (a dict, kept as sorted pairs) to the fused kernel when it runs, e.g.
    ``{"state_every": 4}`` to keep 4x fewer saved states for the backward.
    """

    def __init__(self, variant: SelectiveSSM, d_model: int, *, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, backend: str = "auto", trainable_A: bool = True,
                 pallas_options=None, rngs: nnx.Rngs):
        if not isinstance(variant, SelectiveSSM):
            raise TypeError(f"variant must be a SelectiveSSM, got {type(variant).__name__}")
        _checks.check_choice(backend, "backend", BACKENDS)
        for name, v in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        d_inner = expand * d_model
        variant.check(d_inner, d_state)
        self.variant, self.backend = variant, backend
        self.pallas_options = tuple(sorted(dict(pallas_options or {}).items()))
        self.d_model, self.d_inner, self.d_state, self.d_conv = d_model, d_inner, d_state, d_conv
        self.in_proj = nnx.Linear(d_model, 2 * d_inner, use_bias=False, rngs=rngs)
        lim = d_conv ** -0.5
        self.conv_weight = nnx.Param(jax.random.uniform(rngs.params(), (d_conv, d_inner), jnp.float32, -lim, lim))
        self.conv_bias = nnx.Param(jax.random.uniform(rngs.params(), (d_inner,), jnp.float32, -lim, lim))
        params = variant.init(rngs.params(), d_inner, d_state)
        self.ssm = variant_variables(variant, params, trainable_A)
        self.D = SSMParam(jnp.ones((d_inner,), jnp.float32))
        self.out_proj = nnx.Linear(d_inner, d_model, use_bias=False, rngs=rngs)

    def _delta(self, p, delta):
        if not self.variant.delta_softplus:
            return delta
        return jax.nn.softplus(delta + p.get("delta_bias", 0.0))

    def _scan(self, p, x, z):
        """y * silu(z) with y = SSM(x) + D x; x, z (b, L, d_inner)."""
        A = self.variant.A(p)
        delta, B, C = self.variant.select(p, x)
        if self.variant.discretize == "zoh":
            bias = p.get("delta_bias") if self.variant.delta_softplus else None
            return selective_scan(x, delta, A, B, C, self.D[...], z, bias, self.variant.delta_softplus,
                                  backend=self.backend, pallas_options=self.pallas_options)
        A_bar, Bu_bar = self.variant.discretize(self._delta(p, delta), A, B, x)
        h = linear_scan(A_bar, Bu_bar, axis=1)                          # (b, L, D, N)
        y = jnp.sum(h * C[:, :, None, :], axis=-1)
        return finish_output(y, x, self.D[...], z)

    def __call__(self, u):
        """(batch, L, d_model) -> (batch, L, d_model)."""
        check_sequence(u, self.d_model)
        x, z = jnp.split(self.in_proj(u), 2, axis=-1)
        x = jax.nn.silu(causal_depthwise_conv(x, self.conv_weight[...], self.conv_bias[...]))
        return self.out_proj(self._scan(read(self.ssm), x, z))

    def init_state(self, batch_size: int):
        """Zero state: (conv window (b, d_conv - 1, d_inner), h (b, d_inner, N) float32)."""
        return (jnp.zeros((batch_size, self.d_conv - 1, self.d_inner), jnp.float32),
                jnp.zeros((batch_size, self.d_inner, self.d_state), jnp.float32))

    def step(self, state, u_t):
        """One step: u_t (batch, d_model) -> (state, y_t (batch, d_model))."""
        _checks.check_float(u_t, "u_t")
        _checks.check_shape(u_t, "u_t", ("batch", self.d_model))
        window, h = state
        _checks.check_shape(window, "state[0] (conv window)", (u_t.shape[0], self.d_conv - 1, self.d_inner))
        _checks.check_shape(h, "state[1] (h)", (u_t.shape[0], self.d_inner, self.d_state))
        x, z = jnp.split(self.in_proj(u_t), 2, axis=-1)
        window = jnp.concatenate([window, x[:, None].astype(window.dtype)], axis=1)   # (b, d_conv, D)
        x = jax.nn.silu(jnp.sum(window * self.conv_weight[...], axis=1) + self.conv_bias[...])
        p = read(self.ssm)
        delta, B, C = self.variant.select(p, x[:, None])
        A_bar, Bu_bar = self.variant.discretize_fn(self._delta(p, delta), self.variant.A(p), B, x[:, None])
        h = A_bar[:, 0] * h + Bu_bar[:, 0]
        y = jnp.sum(h * C[:, 0, None, :], axis=-1)
        y = finish_output(y, x, self.D[...], z)
        return (window[:, 1:], h), self.out_proj(y)


class Mamba(SelectiveLayer):
    """The Mamba block with Mamba's selective SSM (:func:`mamba_ssm`).

    ``dt_rank="auto"`` is ceil(d_model / 16). See :class:`SelectiveLayer` for the modes and
    the module docstring for the equations and which parameters are ``SSMParam``.
    """

    def __init__(self, d_model: int, *, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank="auto", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, backend: str = "auto", trainable_A: bool = True,
                 pallas_options=None, rngs: nnx.Rngs):
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        variant = mamba_ssm(dt_rank, dt_min, dt_max, dt_init_floor)
        super().__init__(variant, d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                         backend=backend, trainable_A=trainable_A, pallas_options=pallas_options,
                         rngs=rngs)
