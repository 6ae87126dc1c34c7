"""Loaders of the official Text (aclImdb), Retrieval (AAN TSV) and Image (CIFAR-10) files.

Each test writes a tiny fixture in the official format, loads it and checks shapes,
labels and that the tokens decode back to the source.
"""
import pickle

import numpy as np
import pytest

from ssm_jax import data
from ssm_jax.data import core
from ssm_jax.data.lra import image


# ----------------------------------------------------------------------------- text

def _write_imdb(root, reviews):
    for (split, cls), texts in reviews.items():
        folder = root / "aclImdb" / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(texts):
            (folder / f"{i}_{7 + i}.txt").write_bytes(t)


IMDB = {("train", "pos"): [b"Great movie!", "Tr\u00e8s bien <br /> yes".encode()],
        ("train", "neg"): [b"Awful.", b"x" * 50, b"meh"],
        ("test", "pos"): [b"Loved it"], ("test", "neg"): [b"Boring"]}


def test_text_loader_bytes_labels_and_val_protocol(tmp_path):
    _write_imdb(tmp_path, IMDB)
    task = data.get_task("text", data_dir=tmp_path, seq_len=16)
    tr = task.train
    assert tr.inputs.shape == (5, 16) and tr.inputs.dtype == np.int16
    np.testing.assert_array_equal(tr.labels, [0, 0, 0, 1, 1])  # neg files first, then pos
    decoded = {core.bytes_to_text(row) for row in tr.inputs}
    assert decoded == {b"Awful.", b"x" * 16, b"meh", b"Great movie!", "Tr\u00e8s bien <br /> yes".encode()[:16]}
    assert task.info["vocab_size"] == 257 and task.info["pad_id"] == 0 and task.info["seq_len"] == 16
    assert task.info["val_is_test"] and task.val is task.test
    assert task.info["majority_baseline"]["train"] == pytest.approx(0.6)
    held = data.get_task("text", data_dir=tmp_path / "aclImdb", seq_len=16, val_fraction=0.4, seed=3)
    assert (len(held.train), len(held.val), len(held.test)) == (3, 2, 2) and not held.info["val_is_test"]


def test_text_missing_files_error_names_paths_and_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"aclImdb[/\\]train[/\\]pos[\s\S]*aclImdb_v1\.tar\.gz"):
        data.get_task("text", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="data_dir"):
        data.get_task("text")


# ----------------------------------------------------------------------------- retrieval

AAN_ROWS = {
    "train": ["1\tid_a\tid_b\tDeep nets for parsing.\tParsing with trees and \"quotes",
              "0.0\tid_c\tid_d\tA\tB"],
    "eval": ["0\tx\ty\tfoo\tbar baz"],
    "test": ["1.0\tp\tq\tsame text\tsame text"],
}


def _write_aan(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in AAN_ROWS.items():
        (folder / f"new_aan_pairs.{split}.tsv").write_text("\n".join(rows) + "\n")


def test_retrieval_loader_pairs_and_labels(tmp_path):
    _write_aan(tmp_path / "lra_release" / "tsv_data")
    task = data.get_task("retrieval", data_dir=tmp_path, seq_len=12)
    assert task.info["dual"] and task.info["seq_len"] == 12 and task.info["vocab_size"] == 257
    x = task.train.inputs
    assert x.shape == (2, 2, 12) and x.dtype == np.int16
    np.testing.assert_array_equal(task.train.labels, [1, 0])
    assert core.bytes_to_text(x[0, 0]) == b"Deep nets fo"
    assert core.bytes_to_text(x[0, 1]) == b'Parsing with'
    assert core.bytes_to_text(x[1, 1]) == b"B" and (x[1, 1, 1:] == 0).all()
    np.testing.assert_array_equal(task.val.labels, [0])
    np.testing.assert_array_equal(task.test.labels, [1])


def test_retrieval_bad_rows_and_missing_files(tmp_path):
    _write_aan(tmp_path)
    (tmp_path / "new_aan_pairs.eval.tsv").write_text("1\tonly\tthree\n")
    with pytest.raises(ValueError, match=r"eval\.tsv:1: expected 5 tab-separated fields"):
        data.get_task("retrieval", data_dir=tmp_path)
    (tmp_path / "new_aan_pairs.test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"new_aan_pairs\.test\.tsv[\s\S]*lra_release"):
        data.get_task("retrieval", data_dir=tmp_path)


# ----------------------------------------------------------------------------- image

def _write_cifar(folder, rng, n_per_batch=4):
    folder.mkdir(parents=True)
    batches = {}
    for name in image.TRAIN_FILES + (image.TEST_FILE,):
        rgb = rng.integers(0, 256, size=(n_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        flat = rgb.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)  # R plane, G plane, B plane
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": labels, b"batch_label": name.encode()}, f)
        batches[name] = (rgb, labels)
    return batches


def test_image_loader_grayscale_split_and_float(tmp_path):
    rng = np.random.default_rng(0)
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", rng)
    task = data.get_task("image", data_dir=tmp_path)
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [18, 2, 4]
    assert task.train.inputs.shape == (18, 1024) and task.train.inputs.dtype == np.uint8
    assert task.info["vocab_size"] == 256 and task.info["num_classes"] == 10
    rgb, labels = batches["data_batch_1"]
    # an independent grayscale: TensorFlow's weights, float -> uint8 by truncating x * 255.5
    expected = np.floor((rgb / 255.0) @ np.array([0.2989, 0.5870, 0.1140]) * 255.5).clip(0, 255)
    diff = np.abs(task.train.inputs[:4].astype(int) - expected.reshape(4, 1024).astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    np.testing.assert_array_equal(task.train.labels[:4], labels)
    np.testing.assert_array_equal(task.val.labels, batches["data_batch_5"][1][2:])  # last 10% of train
    np.testing.assert_array_equal(task.test.labels, batches["test_batch"][1])
    flt = data.get_task("image", data_dir=tmp_path / "cifar-10-batches-py", as_float=True)
    assert flt.train.inputs.shape == (18, 1024, 1) and flt.train.inputs.dtype == np.float32
    np.testing.assert_allclose(flt.train.inputs[..., 0], (task.train.inputs - 122.6) / 61.0, atol=1e-6)
    assert flt.info["input_dim"] == 1 and flt.info["vocab_size"] is None


def test_image_gray_of_pure_colors():
    rgb = np.array([[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(image.rgb_to_gray(rgb), [255, 76, 149, 29, 0])


def test_image_missing_files(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match=r"data_batch_1[\s\S]*cifar-10-python\.tar\.gz"):
        data.get_task("image", data_dir=tmp_path)
