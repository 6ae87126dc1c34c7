"""``build_model(model_config, task_info, *, rngs)``: the entry point the training script calls."""
from __future__ import annotations

import functools
import inspect

import ml_collections
from flax import nnx

from ssm_jax.layers import get
from ssm_jax.models.sequence_model import SequenceModel

__all__ = ["build_model", "default_model_config"]


def default_model_config() -> ml_collections.ConfigDict:
    """Defaults of every field ``build_model`` reads.

    layer:         registered layer name (``ssm_jax.layers.available()``), e.g. "s4d", "s4", "mamba".
    d_model, n_layers, d_state: width, depth, SSM state size N.
    dropout:       dropout rate (blocks and position-wise output).
    prenorm:       pre-norm (True) or post-norm residual blocks.
    norm:          "layer" or "batch".
    activation:    position-wise output "gelu", "glu" or "none" (use "none" for Mamba).
    pooling:       "mean", "last" or "none" (classification).
    bidirectional: bidirectional layers (S4, S4D, dense; not for lm).
    layer_kwargs:  extra constructor arguments of the layer, e.g. {"init": "lin"}.

    A user's layer registered with ``ssm_jax.layers.register`` is chosen by its name in
    ``layer``; the training script imports the user's module first (``config.import_modules``).
    """
    return ml_collections.ConfigDict({
        "layer": "s4d",
        "d_model": 128,
        "n_layers": 4,
        "d_state": 64,
        "dropout": 0.0,
        "prenorm": True,
        "norm": "layer",
        "activation": "gelu",
        "pooling": "mean",
        "bidirectional": False,
        "layer_kwargs": {},
    })


def _accepts(factory, name: str) -> bool:
    """Whether ``factory`` (a function, class or partial of one) takes the keyword ``name``."""
    fn = factory.func if isinstance(factory, functools.partial) else factory
    fn = fn.__init__ if isinstance(fn, type) else fn
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def build_model(model_config, task_info, *, rngs: nnx.Rngs) -> SequenceModel:
    """Build the :class:`~ssm_jax.models.sequence_model.SequenceModel` of a config and task.

    Args:
      model_config: ``ConfigDict`` or dict with the fields of :func:`default_model_config`
        (missing fields take those defaults; unknown fields are an error).
      task_info: dict with ``num_classes``, ``vocab_size`` (int for token inputs, None
        for floats), ``input_dim`` (float inputs), ``seq_len``, ``dual`` (bool), ``task``
        ("classification" | "lm") and optionally ``pad_id`` (masked out of pooling).
        Layers that take ``l_max`` (S4) get ``seq_len`` unless ``layer_kwargs`` sets it.
      rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` for training).
    Returns:
      The model; ``model(x)`` returns logits.
    """
    cfg = default_model_config()
    given = dict(model_config)
    unknown = sorted(set(given) - set(cfg))
    if unknown:
        raise ValueError(f"model_config has unknown fields {unknown}; known: {sorted(cfg)}")
    cfg.update(given)
    info = dict(task_info)
    layer_kwargs = dict(cfg.layer_kwargs)
    if "l_max" not in layer_kwargs and info.get("seq_len") and _accepts(get(cfg.layer), "l_max"):
        layer_kwargs["l_max"] = int(info["seq_len"])   # S4's C~ refers to the sequence length
    return SequenceModel(
        layer=cfg.layer, d_model=cfg.d_model, n_layers=cfg.n_layers, d_state=cfg.d_state,
        dropout=cfg.dropout, prenorm=cfg.prenorm, norm=cfg.norm, activation=cfg.activation,
        pooling=cfg.pooling, bidirectional=cfg.bidirectional, layer_kwargs=layer_kwargs,
        num_classes=info.get("num_classes"), vocab_size=info.get("vocab_size"),
        input_dim=info.get("input_dim"), dual=bool(info.get("dual", False)),
        task=info.get("task", "classification"), pad_id=info.get("pad_id"), rngs=rngs)
