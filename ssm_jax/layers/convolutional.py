"""Base of the linear time-invariant layers (S4, S4D and other diagonal variants, dense A).

A subclass defines ``kernel(L, backward=False) -> (L, H)`` (and ``D`` (H,),
``d_model``, ``bidirectional``); this class gives the whole-sequence mode:

    y = K * u + D u                               (causal FFT convolution)
    y = K_fwd * u + K_bwd (*) u + D u             (bidirectional: K_bwd looks at the future)

(``ssm_jax.kernels.causal_conv`` / ``bidirectional_conv``). The recurrent mode is the
subclass's ``init_state`` / ``step``.
"""
from __future__ import annotations

from flax import nnx

from ssm_jax.kernels import bidirectional_conv, causal_conv
from ssm_jax.layers.common import check_sequence

__all__ = ["ConvolutionalSSM"]


class ConvolutionalSSM(nnx.Module):
    """Whole-sequence mode of an LTI SSM layer from its ``kernel`` (module docstring)."""

    def __call__(self, u):
        """(batch, L, H) -> (batch, L, H)."""
        check_sequence(u, self.d_model)
        L = u.shape[1]
        if self.bidirectional:
            return bidirectional_conv(u, self.kernel(L), self.kernel(L, backward=True), self.D[...])
        return causal_conv(u, self.kernel(L), self.D[...])
