"""Sequence models built from registered layers.

Entry point: ``build_model(model_config, task_info, *, rngs) -> nnx.Module`` with
``model_config`` as :func:`default_model_config` (an ``ml_collections.ConfigDict``) and
``task_info`` a dict (``num_classes``, ``vocab_size``, ``input_dim``, ``seq_len``,
``dual``, ``task``, optional ``pad_id``); ``model(x, lengths=None)`` returns logits.
See :mod:`ssm_jax.models.sequence_model` for the architecture.
"""
from ssm_jax.models.blocks import PositionwiseOutput, ResidualBlock
from ssm_jax.models.build import build_model, default_model_config
from ssm_jax.models.sequence_model import SequenceModel, pool

__all__ = ["build_model", "default_model_config", "SequenceModel", "ResidualBlock", "PositionwiseOutput", "pool"]
