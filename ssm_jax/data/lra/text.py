"""Text (LRA): byte-level IMDb sentiment classification, L = 4096, 2 classes.

Files: the Large Movie Review Dataset, ``aclImdb/{train,test}/{pos,neg}/*.txt``
(https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz; LRA reads the same
data through TFDS ``imdb_reviews``). ``data_dir`` may be the folder holding ``aclImdb/``
or ``aclImdb/`` itself. Labels: neg 0, pos 1. Reviews are read in file-name order.

Tokens: the UTF-8 bytes of each review, id = byte + 1 (0 is padding), vocab 257, as
LRA's ByteTextEncoder; truncated to the first ``seq_len`` (4096) bytes and padded with 0
at the end. Inputs int16 (n, seq_len).

Splits: train = aclImdb/train (25000), test = aclImdb/test (25000). IMDb has no
validation set; LRA (and S4) evaluate on the test set, so by default val *is* the test
set (``info["val_is_test"]`` is True). ``val_fraction=f`` instead holds out a random
fraction f of train (fixed by ``seed``) as val.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssm_jax.data import core

OFFICIAL_SOURCE = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (Maas et al. 2011)"
CLASSES = ("neg", "pos")


def find_root(data_dir) -> Path:
    """The ``aclImdb`` folder under ``data_dir`` (or ``data_dir`` itself)."""
    data_dir = Path(data_dir).expanduser()
    for c in (data_dir / "aclImdb", data_dir, data_dir / "lra_release" / "aclImdb"):
        if all((c / s / k).is_dir() for s in ("train", "test") for k in CLASSES):
            return c
    root = data_dir / "aclImdb"
    missing = [root / s / k for s in ("train", "test") for k in CLASSES if not (root / s / k).is_dir()]
    raise core.missing_files_error("text", missing, where=f"{root}/{{train,test}}/{{pos,neg}}/*.txt",
                                   source=OFFICIAL_SOURCE)


def read_split(folder: Path, seq_len: int) -> core.Split:
    """Reviews of ``folder``/{neg,pos}/*.txt: int16 byte tokens (n, seq_len), int32 labels (n,)."""
    docs, labels = [], []
    for label, cls in enumerate(CLASSES):
        files = sorted((folder / cls).glob("*.txt"))
        docs += [f.read_bytes() for f in files]
        labels += [label] * len(files)
    if not docs:
        raise core.missing_files_error("text", [folder / "pos" / "*.txt", folder / "neg" / "*.txt"],
                                       where=f"{folder}/{{pos,neg}}/*.txt", source=OFFICIAL_SOURCE)
    return core.Split(core.byte_tokens(docs, seq_len), np.asarray(labels, np.int32))


def load(*, data_dir=None, seed: int = 0, seq_len: int = 4096, val_fraction: float = 0.0) -> core.Task:
    """IMDb byte-level task from ``data_dir`` (see module docstring for splits and tokens)."""
    if data_dir is None:
        raise core.missing_files_error("text", ["aclImdb/"], where="pass data_dir=<folder holding aclImdb/>",
                                       source=OFFICIAL_SOURCE)
    core.check_positive_int(seq_len, "seq_len")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    root = find_root(data_dir)
    train, test = read_split(root / "train", seq_len), read_split(root / "test", seq_len)
    if val_fraction > 0:
        val_idx, train_idx = core.split_off(len(train), (val_fraction, 1 - val_fraction), seed=seed)
        train, val = core.take(train, train_idx), core.take(train, val_idx)
    else:
        val = test
    return core.make_task("text", {"train": train, "val": val, "test": test}, num_classes=2,
                          seq_len=seq_len, vocab_size=257, pad_id=0, val_is_test=val_fraction == 0,
                          files=str(root))
