"""Containers and batching shared by every task: `Split`, `Task`, `batches`.

A task is plain numpy data in memory: three splits ("train", "val", "test"), each an
`inputs` array (first axis = examples) and an int32 `labels` array of shape (n,). The
`info` dict says how to build a model for it (classes, vocabulary, input width, length,
dual encoder or not) and what the trivial baseline is.

`batches` is the only iterator: deterministic given (seed, epoch), and resumable in the
middle of an epoch with `start_batch`, so a resumed run sees the same examples in the
same order as a run that never stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a task: ``inputs`` (n, ...) and int32 ``labels`` (n,)."""

    inputs: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if not isinstance(self.inputs, np.ndarray) or not isinstance(self.labels, np.ndarray):
            raise TypeError("Split.inputs and Split.labels must be numpy arrays, got "
                            f"{type(self.inputs).__name__} and {type(self.labels).__name__}")
        if self.labels.ndim != 1 or self.labels.dtype != np.int32:
            raise ValueError(f"Split.labels must be int32 of shape (n,), got {self.labels.dtype} "
                             f"of shape {self.labels.shape}")
        if self.inputs.shape[:1] != self.labels.shape:
            raise ValueError(f"Split.inputs has {self.inputs.shape[0] if self.inputs.ndim else 0} "
                             f"examples but Split.labels has {self.labels.shape[0]}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (f"Split(inputs={self.inputs.dtype}{tuple(self.inputs.shape)}, "
                f"labels={self.labels.dtype}{tuple(self.labels.shape)})")


@dataclasses.dataclass(frozen=True)
class Task:
    """A classification task: ``name``, ``splits`` {"train","val","test"} -> Split, ``info``.

    ``info`` keys: ``task`` ("classification"), ``num_classes``, ``vocab_size`` (None for
    float inputs), ``input_dim`` (channels of float inputs; None for tokens), ``seq_len``,
    ``dual`` (True when inputs are (n, 2, L) document pairs), ``pad_id`` (token id of
    padding, or None), ``majority_baseline`` ({split: accuracy of always predicting that
    split's most frequent class}), plus task-specific entries documented per task.
    """

    name: str
    splits: Mapping[str, Split]
    info: Mapping[str, object]

    def __post_init__(self):
        missing = [s for s in SPLIT_NAMES if s not in self.splits]
        if missing:
            raise ValueError(f"Task {self.name!r} splits must contain {list(SPLIT_NAMES)}; "
                             f"missing {missing}")

    @property
    def train(self) -> Split:
        """The training split."""
        return self.splits["train"]

    @property
    def val(self) -> Split:
        """The validation split (model selection)."""
        return self.splits["val"]

    @property
    def test(self) -> Split:
        """The test split."""
        return self.splits["test"]


def majority_baseline(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent label of ``labels`` (int, (n,))."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return 0.0
    return float(np.bincount(labels.astype(np.int64)).max() / labels.size)


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest integer dtype holding ids 0..vocab_size-1: uint8, int16 or int32."""
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 32768:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def make_task(name: str, splits: Mapping[str, Split], *, num_classes: int, seq_len: int,
              vocab_size: int | None, input_dim: int | None = None, dual: bool = False,
              pad_id: int | None = None, **extra) -> Task:
    """Build a `Task`, filling ``info`` (incl. per-split ``majority_baseline``)."""
    info = dict(
        task="classification",
        num_classes=int(num_classes),
        vocab_size=None if vocab_size is None else int(vocab_size),
        input_dim=input_dim,
        seq_len=int(seq_len),
        dual=bool(dual),
        pad_id=pad_id,
        majority_baseline={k: majority_baseline(s.labels) for k, s in splits.items()},
        num_examples={k: len(s) for k, s in splits.items()},
    )
    info.update(extra)
    return Task(name=name, splits=dict(splits), info=info)


def num_batches(split: Split, batch_size: int, *, drop_remainder: bool = True) -> int:
    """How many batches `batches` yields for one epoch of ``split``."""
    check_positive_int(batch_size, "batch_size")
    n = len(split)
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order (int64 (n,)) of one epoch: a permutation fixed by (seed, epoch)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch), 0x5D]).permutation(n)


def batches(split: Split, batch_size: int, *, seed: int, epoch: int = 0, shuffle: bool = True,
            drop_remainder: bool = True, start_batch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(inputs, labels)`` numpy batches of one epoch of ``split``.

    The order is a permutation fixed by (``seed``, ``epoch``) (identity when
    ``shuffle=False``). ``start_batch`` skips the first batches of that same order, so
    a run resumed at batch k of an epoch sees exactly what an uninterrupted run sees.
    With ``drop_remainder=False`` the last batch may be smaller than ``batch_size``.
    Shapes: inputs (batch_size, ...) as stored in the split, labels int32 (batch_size,).
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a ssm_jax.data.Split, got {type(split).__name__}")
    total = num_batches(split, batch_size, drop_remainder=drop_remainder)
    if total == 0:
        raise ValueError(f"batch_size={batch_size} is larger than the split ({len(split)} examples) "
                         "and drop_remainder=True: no batch would be produced")
    if not isinstance(start_batch, (int, np.integer)) or not 0 <= start_batch <= total:
        raise ValueError(f"start_batch must be an int in [0, {total}] (batches per epoch), "
                         f"got {start_batch!r}")
    order = epoch_order(len(split), seed=seed, epoch=epoch, shuffle=shuffle)
    for b in range(int(start_batch), total):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield split.inputs[idx], split.labels[idx]


# ----------------------------------------------------------------------------- helpers

def default_cache_dir() -> Path:
    """Where generated data sets are cached: $SSM_JAX_CACHE or ~/.cache/ssm_jax."""
    return Path(os.environ.get("SSM_JAX_CACHE", Path.home() / ".cache" / "ssm_jax")).expanduser()


def options_key(name: str, options: Mapping[str, object]) -> str:
    """A short stable directory name for a generated set: ``<name>-<hash of options>``."""
    blob = json.dumps({k: options[k] for k in sorted(options)}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def build_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """Return ``folder``, first calling ``build(tmp)`` and renaming tmp to it if it is absent.

    The rename is atomic, so an existing folder is always complete, and processes that
    generate the same cached set at the same time do not corrupt each other's files.
    """
    folder = Path(folder)
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        os.rename(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def split_off(n: int, fractions: tuple[float, ...], *, seed: int) -> list[np.ndarray]:
    """Partition range(n) at random into parts of the given fractions (last part: rest).

    Returns index arrays (sorted within each part), fixed by ``seed``.
    """
    order = np.random.default_rng([int(seed), 0xA11]).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return [np.sort(p) for p in np.split(order, cuts)]


def take(split: Split, idx: np.ndarray) -> Split:
    """The sub-split of ``split`` at indices ``idx``."""
    return Split(split.inputs[idx], split.labels[idx])


def pad_tokens(seqs: list, seq_len: int, dtype, *, pad_id: int = 0) -> np.ndarray:
    """Stack integer sequences into (n, seq_len): truncate longer ones, pad with ``pad_id``."""
    out = np.full((len(seqs), seq_len), pad_id, dtype=dtype)
    for i, s in enumerate(seqs):
        s = s[:seq_len]
        out[i, :len(s)] = s
    return out


def byte_tokens(docs: list, seq_len: int) -> np.ndarray:
    """Byte-level tokens of documents (bytes): int16 (n, seq_len), id = byte + 1, pad 0.

    As LRA's ByteTextEncoder (0 reserved for padding, vocab 257); longer documents are
    truncated to their first ``seq_len`` bytes.
    """
    return pad_tokens([np.frombuffer(d[:seq_len], np.uint8).astype(np.int16) + 1 for d in docs],
                      seq_len, np.int16, pad_id=0)


def bytes_to_text(tokens) -> bytes:
    """Inverse of `byte_tokens` for one row: token ids (L,) -> the bytes (padding dropped)."""
    t = np.asarray(tokens).astype(np.int64)
    return (t[t > 0] - 1).astype(np.uint8).tobytes()


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as int, or raise ValueError naming ``name`` if not a positive int."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def missing_files_error(task: str, missing: list, *, where: str, source: str) -> FileNotFoundError:
    """A FileNotFoundError listing the ``missing`` paths, where they go and where to get them."""
    lines = "\n  ".join(str(m) for m in missing)
    return FileNotFoundError(
        f"{task}: missing data files:\n  {lines}\n"
        f"Expected layout: {where}\n"
        f"Official source: {source}"
    )
