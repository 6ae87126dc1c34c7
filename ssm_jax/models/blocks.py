"""Residual blocks around any registered layer (as in S4's example.py).

    z = norm(x) if prenorm else x
    z = dropout(output(layer(z)))             output: position-wise GELU / GLU / none
    x = x + z;  x = x if prenorm else norm(x)

Position-wise output on (batch, L, H), as S4's layers end:
  ``"gelu"``: W dropout(gelu(z)) + b,  W (H, H);
  ``"glu"``:  GLU(W dropout(gelu(z)) + b),  W (H, 2H), GLU(a, g) = a * sigmoid(g);
  ``"none"``: z (for layers with their own output projection, e.g. Mamba).
"""
from __future__ import annotations

import jax
from flax import nnx

from ssm_jax import _checks

__all__ = ["PositionwiseOutput", "ResidualBlock", "make_norm", "NORMS", "ACTIVATIONS"]

NORMS = ("layer", "batch")
ACTIVATIONS = ("gelu", "glu", "none")


def make_norm(kind: str, d_model: int, *, rngs: nnx.Rngs) -> nnx.Module:
    """LayerNorm or BatchNorm over the channel axis of (batch, L, d_model)."""
    _checks.check_choice(kind, "norm", NORMS)
    if kind == "layer":
        return nnx.LayerNorm(d_model, rngs=rngs)
    return nnx.BatchNorm(d_model, rngs=rngs)


class PositionwiseOutput(nnx.Module):
    """The position-wise output of a layer (module docstring): (..., H) -> (..., H)."""

    def __init__(self, d_model: int, activation: str, dropout: float, *, rngs: nnx.Rngs):
        _checks.check_choice(activation, "activation", ACTIVATIONS)
        self.activation = activation
        width = 2 * d_model if activation == "glu" else d_model
        self.linear = nnx.Linear(d_model, width, rngs=rngs) if activation != "none" else None
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, z):
        if self.linear is None:
            return z
        z = self.linear(self.dropout(jax.nn.gelu(z)))
        return jax.nn.glu(z, axis=-1) if self.activation == "glu" else z


class ResidualBlock(nnx.Module):
    """x -> x + dropout(output(layer(norm(x)))) (pre-norm) or its post-norm form.

    ``__call__(x)``: (batch, L, H) -> (batch, L, H). ``init_state`` / ``step(state, x_t)``
    with x_t (batch, H) run the layer recurrently (causal layers only).
    """

    def __init__(self, layer: nnx.Module, d_model: int, *, prenorm: bool = True, norm: str = "layer",
                 activation: str = "gelu", dropout: float = 0.0, rngs: nnx.Rngs):
        self.layer = layer
        self.prenorm = bool(prenorm)
        self.norm = make_norm(norm, d_model, rngs=rngs)
        self.output = PositionwiseOutput(d_model, activation, dropout, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def _residual(self, x, z):
        x = x + self.dropout(self.output(z))
        return x if self.prenorm else self.norm(x)

    def __call__(self, x):
        z = self.norm(x) if self.prenorm else x
        return self._residual(x, self.layer(z))

    def init_state(self, batch_size: int):
        return self.layer.init_state(batch_size)

    def step(self, state, x_t):
        """One step: x_t (batch, H) -> (state, (batch, H))."""
        z = self.norm(x_t) if self.prenorm else x_t
        state, z = self.layer.step(state, z)
        return state, self._residual(x_t, z)
