"""A sequence model: encoder, a stack of residual blocks, pooling and a head.

    h = encoder(x)                   Embed (token ids) or Linear (float features) -> (b, L, H)
    h = block_n(... block_1(h))      ResidualBlock around a registered layer, n_layers times
    h = norm_f(h)                    (pre-norm models only)
    classification:  logits = head(pool(h))           (b, num_classes); (b, L, C) with pooling "none"
    dual (retrieval): h1, h2 = pool(backbone(x[:, 0])), pool(backbone(x[:, 1]))
                      logits = MLP([h1, h2, h1 * h2, h1 - h2])   (as LRA / S4)
    lm:              logits = head(h)                 (b, L, vocab_size), causal layers only

Inputs: token ids int (b, L) (dual: (b, 2, L)), or floats (b, L, input_dim) (dual:
(b, 2, L, input_dim)). Padding: ``lengths`` (b,) (dual: (b, 2)) makes "mean" pooling
average the first ``lengths`` positions and "last" pooling take position lengths - 1;
without it, for token inputs and a ``pad_id`` (e.g. 0), positions equal to ``pad_id``
are left out of the mean and "last" takes the last non-pad position (padding at the end).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ssm_jax import _checks
from ssm_jax.layers import make_layer
from ssm_jax.models.blocks import ResidualBlock, make_norm

__all__ = ["SequenceModel", "pool", "POOLINGS", "TASKS"]

POOLINGS = ("mean", "last", "none")
TASKS = ("classification", "lm")


def pool(h, mask, kind: str):
    """Pool (b, L, H) over L: masked mean, last unmasked position, or none. mask (b, L) bool."""
    if kind == "none":
        return h
    if kind == "mean":
        w = mask.astype(h.dtype)[..., None]
        return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)                     # (b,)
    return jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]


class SequenceModel(nnx.Module):
    """Encoder + residual stack + pooling + head (module docstring).

    ``__call__(x, lengths=None)`` returns logits: (batch, num_classes), (batch, L,
    num_classes) with pooling "none", or (batch, L, vocab_size) for ``task="lm"``.
    ``init_state(batch)`` / ``step(state, x_t)`` run a causal ``lm`` model one token at a
    time (x_t (batch,) ids or (batch, input_dim) floats -> logits (batch, vocab_size)).
    Dropout is on after ``model.train()``, off after ``model.eval()``.
    """

    def __init__(self, *, layer: str, d_model: int, n_layers: int, num_classes=None, vocab_size=None,
                 input_dim=None, d_state: int = 64, dropout: float = 0.0, prenorm: bool = True,
                 norm: str = "layer", activation: str = "gelu", pooling: str = "mean",
                 bidirectional: bool = False, layer_kwargs=None, dual: bool = False,
                 task: str = "classification", pad_id=None, rngs: nnx.Rngs):
        _checks.check_choice(pooling, "pooling", POOLINGS)
        _checks.check_choice(task, "task", TASKS)
        if task == "lm" and (vocab_size is None or bidirectional or dual):
            raise ValueError("task='lm' needs token inputs (vocab_size), bidirectional=False and dual=False")
        if task == "classification" and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int for classification, got {num_classes!r}")
        if vocab_size is None and (not isinstance(input_dim, int) or input_dim < 1):
            raise ValueError(f"input_dim must be a positive int for float inputs (vocab_size None), got {input_dim!r}")
        if dual and pooling == "none":
            raise ValueError("dual inputs need pooling 'mean' or 'last', got 'none'")
        self.vocab_size, self.input_dim, self.pad_id = vocab_size, input_dim, pad_id
        self.pooling, self.task, self.dual, self.prenorm = pooling, task, bool(dual), bool(prenorm)
        self.encoder = (nnx.Embed(vocab_size, d_model, rngs=rngs) if vocab_size is not None
                        else nnx.Linear(input_dim, d_model, rngs=rngs))
        kwargs = dict(layer_kwargs or {}, d_state=d_state)
        if bidirectional:
            kwargs["bidirectional"] = True
        self.blocks = nnx.List([
            ResidualBlock(make_layer(layer, d_model, rngs=rngs, **kwargs), d_model, prenorm=prenorm,
                          norm=norm, activation=activation, dropout=dropout, rngs=rngs)
            for _ in range(n_layers)])
        self.norm_f = make_norm(norm, d_model, rngs=rngs) if prenorm else None
        if task == "lm":
            self.head = nnx.Linear(d_model, vocab_size, rngs=rngs)
        elif dual:
            self.head = nnx.Sequential(nnx.Linear(4 * d_model, d_model, rngs=rngs), jax.nn.gelu,
                                       nnx.Linear(d_model, num_classes, rngs=rngs))
        else:
            self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

    def _check_input(self, x, lengths):
        lead = ("batch", 2, "L") if self.dual else ("batch", "L")
        if self.vocab_size is not None:
            _checks.check_int(x, "x")
            _checks.check_shape(x, "x", lead)
        else:
            _checks.check_float(x, "x")
            _checks.check_shape(x, "x", lead + (self.input_dim,))
        if lengths is not None:
            _checks.check_int(lengths, "lengths")
            _checks.check_shape(lengths, "lengths", x.shape[:len(lead) - 1])   # (batch,) or (batch, 2)

    def _mask(self, x, lengths):
        """(batch', L) bool: positions that count in pooling."""
        L = x.shape[1]
        if lengths is not None:
            return jnp.arange(L)[None, :] < lengths.reshape(-1)[:, None]
        if self.vocab_size is not None and self.pad_id is not None:
            return x != self.pad_id
        return jnp.ones(x.shape[:2], bool)

    def backbone(self, x):
        """Encoded and mixed features, (batch, L, d_model)."""
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h)
        return self.norm_f(h) if self.norm_f is not None else h

    def __call__(self, x, lengths=None):
        self._check_input(x, lengths)
        if self.dual:                                  # both sequences through the same backbone
            x = x.reshape((-1,) + x.shape[2:])
        h = self.backbone(x)
        if self.task == "lm":
            return self.head(h)
        h = pool(h, self._mask(x, lengths), self.pooling)
        if self.dual:
            h1, h2 = h[0::2], h[1::2]
            h = jnp.concatenate([h1, h2, h1 * h2, h1 - h2], axis=-1)
        return self.head(h)

    def init_state(self, batch_size: int):
        """Recurrent state of every block (a list)."""
        return [block.init_state(batch_size) for block in self.blocks]

    def step(self, state, x_t):
        """One step of an ``lm`` model: (state, x_t) -> (state, logits_t (batch, vocab_size))."""
        if self.task != "lm":
            raise ValueError(f"step is for task='lm' models, this one is task={self.task!r}")
        h = self.encoder(x_t)
        new_state = []
        for block, s in zip(self.blocks, state):
            s, h = block.step(s, h)
            new_state.append(s)
        h = self.norm_f(h) if self.norm_f is not None else h
        return new_state, self.head(h)
