"""Synthetic long-memory task for initialization ablations: "delayed_sum".

Each sequence has length ``seq_len``. A *key* symbol a (one of ``num_symbols``) sits at
position p, drawn uniformly from [0, seq_len - 1 - min_delay]; a *query* symbol b sits
at the last position; every other position holds a random *noise* token from a separate
alphabet of ``num_noise`` symbols. The label is (a + b) mod num_symbols.

Why this shape: the label depends jointly on two tokens at least ``min_delay`` steps
apart, so no local feature (and no pooling of local features) solves it: the model must
carry a through ``min_delay`` steps of noise and combine it with b. Models whose state
forgets within the delay stay at chance (1 / num_symbols); models with long memory
(HiPPO-style A) solve it. With the defaults (min_delay = seq_len - 1) the key is always
the first token and the delay is the whole sequence.

Tokens (vocab_size = 1 + num_symbols + num_noise): 0 is unused (pad id, never present),
key and query symbols are 1..num_symbols, noise tokens num_symbols+1 ... Labels are
balanced in expectation (a and b uniform).
"""
from __future__ import annotations

import numpy as np

from ssm_jax.data import core


def generate_split(n: int, *, seq_len: int, num_symbols: int, num_noise: int, min_delay: int,
                   rng: np.random.Generator) -> core.Split:
    """``n`` delayed-sum examples: inputs (n, seq_len) tokens, labels int32 (n,)."""
    dtype = core.token_dtype(1 + num_symbols + num_noise)
    inputs = rng.integers(num_symbols + 1, num_symbols + 1 + num_noise, size=(n, seq_len)).astype(dtype)
    a = rng.integers(0, num_symbols, size=n)
    b = rng.integers(0, num_symbols, size=n)
    pos = rng.integers(0, seq_len - 1 - min_delay + 1, size=n)
    inputs[np.arange(n), pos] = a + 1
    inputs[:, -1] = b + 1
    return core.Split(inputs, ((a + b) % num_symbols).astype(np.int32))


def load(*, data_dir=None, seed: int = 0, seq_len: int = 256, num_symbols: int = 4, num_noise: int = 8,
         min_delay: int | None = None, num_train: int = 4000, num_val: int = 500,
         num_test: int = 500) -> core.Task:
    """The delayed-sum task (see module docstring); ``data_dir`` is unused (kept for the API)."""
    del data_dir
    for name, v in (("seq_len", seq_len), ("num_symbols", num_symbols), ("num_noise", num_noise),
                    ("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        core.check_positive_int(v, name)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (a key and a query), got {seq_len}")
    if num_symbols < 2:
        raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")
    min_delay = seq_len - 1 if min_delay is None else min_delay
    if not isinstance(min_delay, (int, np.integer)) or not 1 <= min_delay <= seq_len - 1:
        raise ValueError(f"min_delay must be an int in [1, seq_len - 1 = {seq_len - 1}], got {min_delay!r}")
    kw = dict(seq_len=seq_len, num_symbols=num_symbols, num_noise=num_noise, min_delay=min_delay)
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    splits = {name: generate_split(n, rng=np.random.default_rng([seed, i, 0xDE1A]), **kw)
              for i, (name, n) in enumerate(sizes.items())}
    return core.make_task("delayed_sum", splits, num_classes=num_symbols, seq_len=seq_len,
                          vocab_size=1 + num_symbols + num_noise, pad_id=0, min_delay=min_delay,
                          chance=1.0 / num_symbols)
