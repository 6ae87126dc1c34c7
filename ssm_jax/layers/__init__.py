"""flax.nnx layers of state space models, and the registry that picks them by name.

Built-in layers (``make_layer(name, d_model, rngs=..., **kwargs)``):

  "s4d"   :class:`S4D`, a :class:`~ssm_jax.layers.variants.DiagonalSSM` (``s4d_ssm``)
  "mamba" :class:`Mamba`, a :class:`~ssm_jax.layers.variants.SelectiveSSM` (``mamba_ssm``)
  "s4"    :class:`S4`, DPLR (HiPPO init), Cauchy kernel; step by the dense bilinear recurrence
  "dense" :class:`DenseSSM`, dense A (HiPPO or random), for the initialization ablation

Every layer: ``Layer(d_model, *, d_state=..., ..., rngs)``; ``__call__(x)`` on
(batch, L, d_model); ``init_state(batch_size)`` and ``step(state, x_t)`` for recurrent
inference (x_t (batch, d_model)), with the same outputs. A new SSM: write a variant
(:mod:`ssm_jax.layers.variants`) and ``register`` it.

Parameter kinds (the optimizer selects by type): ``SSMParam`` (own learning rate, no
weight decay) holds
  S4D:   log_A_real, A_imag, B, C, log_dt, D
  S4:    log_A_real, A_imag, P, B, C (S4's C~), C_bwd, log_dt, D
  dense: A, B, C, C_bwd, log_dt, D
  Mamba: A_log, D (the Mamba repository's no-weight-decay set; its delta_bias, x_proj,
         dt_proj, conv and projections are ordinary ``nnx.Param``)
With ``trainable_A=False`` the parameters of A are ``FrozenSSMVariable`` (not an
``nnx.Param``), so optimizers over ``nnx.Param`` leave them alone.
"""
from ssm_jax.layers.common import FrozenSSMVariable
from ssm_jax.layers.dense import DenseSSM
from ssm_jax.layers.diagonal import S4D, DiagonalLayer, s4d_ssm
from ssm_jax.layers.params import SSMParam
from ssm_jax.layers.registry import available, get, make_layer, register
from ssm_jax.layers.s4 import S4
from ssm_jax.layers.selective import Mamba, SelectiveLayer, mamba_ssm
from ssm_jax.layers.variants import DiagonalSSM, SelectiveSSM, VariantError

__all__ = [
    "S4", "S4D", "Mamba", "DenseSSM", "DiagonalLayer", "SelectiveLayer", "DiagonalSSM", "SelectiveSSM",
    "VariantError", "SSMParam", "FrozenSSMVariable", "s4d_ssm", "mamba_ssm",
    "register", "get", "available", "make_layer",
]

register("s4d", S4D)
register("mamba", Mamba)
register("s4", S4)
register("dense", DenseSSM)
