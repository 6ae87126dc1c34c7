"""Image (LRA): sequential grayscale CIFAR-10, L = 1024 pixels, 10 classes.

Files: the CIFAR-10 python release, ``cifar-10-batches-py/`` with pickles
``data_batch_1`` ... ``data_batch_5`` and ``test_batch``
(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz). ``data_dir`` may be the
folder holding ``cifar-10-batches-py/`` or that folder itself.

Grayscale as LRA (``tf.image.rgb_to_grayscale`` on uint8): g = 0.2989 R + 0.5870 G +
0.1140 B computed on [0, 1] floats, then back to uint8 as TensorFlow does
(truncate(g * 255.5)). Pixels in raster order: inputs uint8 (n, 1024), vocab 256, as LRA's
tokens. With ``as_float=True``: float32 (n, 1024, 1) normalized as S4's grayscale sCIFAR,
(x - 122.6) / 61.0.

Splits as LRA: train = the first 90% (45000) of the training batches in file order, val =
the last 10% (5000), test = test_batch (10000).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ssm_jax.data import core

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
OFFICIAL_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (CIFAR-10, python version)"
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)  # tf.image.rgb_to_grayscale
S4_MEAN, S4_STD = 122.6, 61.0


def find_folder(data_dir) -> Path:
    """The ``cifar-10-batches-py`` folder under ``data_dir`` (or ``data_dir`` itself)."""
    data_dir = Path(data_dir).expanduser()
    for c in (data_dir / "cifar-10-batches-py", data_dir):
        if all((c / f).is_file() for f in TRAIN_FILES + (TEST_FILE,)):
            return c
    folder = data_dir / "cifar-10-batches-py"
    missing = [folder / f for f in TRAIN_FILES + (TEST_FILE,) if not (folder / f).is_file()]
    raise core.missing_files_error("image", missing, where=f"{folder}/{{data_batch_1..5,test_batch}}",
                                   source=OFFICIAL_SOURCE)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> uint8 (...) gray, exactly as tf.image.rgb_to_grayscale on uint8."""
    g = (rgb.astype(np.float32) * np.float32(1 / 255)) @ GRAY_WEIGHTS
    return np.clip(np.trunc(g * np.float32(255.5)), 0, 255).astype(np.uint8)


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle: gray pixels uint8 (n, 1024) in raster order, labels int32 (n,)."""
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    try:
        data, labels = d[b"data"], d[b"labels"]
    except KeyError:
        raise ValueError(f"{path}: expected a CIFAR-10 pickle with keys b'data' and b'labels', "
                         f"got keys {sorted(d)}") from None
    data = np.asarray(data, np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: data must have shape (n, 3072) (R, G, B planes of 32x32), got {data.shape}")
    rgb = data.reshape(-1, 3, 1024).transpose(0, 2, 1)
    return rgb_to_gray(rgb), np.asarray(labels, np.int32)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (n, L) -> float32 (n, L, 1), (x - 122.6) / 61.0 as S4's grayscale CIFAR."""
    return ((pixels.astype(np.float32) - S4_MEAN) / S4_STD)[..., None]


def load(*, data_dir=None, seed: int = 0, as_float: bool = False) -> core.Task:
    """Grayscale sequential CIFAR-10 from ``data_dir``; ``seed`` is unused (LRA's fixed split)."""
    del seed
    if data_dir is None:
        raise core.missing_files_error("image", ["cifar-10-batches-py/"],
                                       where="pass data_dir=<folder holding cifar-10-batches-py/>",
                                       source=OFFICIAL_SOURCE)
    folder = find_folder(data_dir)
    parts = [read_batch(folder / f) for f in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test, y_test = read_batch(folder / TEST_FILE)
    cut = int(0.9 * len(y))
    conv = to_float if as_float else (lambda a: a)
    splits = {"train": core.Split(conv(x[:cut]), y[:cut]), "val": core.Split(conv(x[cut:]), y[cut:]),
              "test": core.Split(conv(x_test), y_test)}
    return core.make_task("image", splits, num_classes=10, seq_len=1024,
                          vocab_size=None if as_float else 256, input_dim=1 if as_float else None,
                          pad_id=None, image_shape=(32, 32), files=str(folder))
