"""Tests of the data API: Split/Task containers, batches (determinism, resume), get_task."""
import numpy as np
import pytest

from ssm_jax import data
from ssm_jax.data import core


def _split(n=10, L=3):
    return core.Split(np.arange(n * L, dtype=np.int32).reshape(n, L), (np.arange(n) % 3).astype(np.int32))


def test_split_validates_labels_and_lengths():
    with pytest.raises(ValueError, match="labels must be int32"):
        core.Split(np.zeros((3, 2)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="3 examples"):
        core.Split(np.zeros((3, 2)), np.zeros(4, np.int32))


def test_batches_cover_epoch_once_and_are_deterministic():
    s = _split(10)
    got = list(data.batches(s, 3, seed=1, epoch=0))
    assert len(got) == 3 == data.num_batches(s, 3)
    assert all(x.shape == (3, 3) and y.shape == (3,) for x, y in got)
    rows = np.concatenate([x[:, 0] // 3 for x, _ in got])
    assert len(set(rows.tolist())) == 9  # no repeats; one example dropped (remainder)
    again = list(data.batches(s, 3, seed=1, epoch=0))
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(got, again))
    other_epoch = np.concatenate([x[:, 0] for x, _ in data.batches(s, 3, seed=1, epoch=1)])
    assert not np.array_equal(other_epoch, np.concatenate([x[:, 0] for x, _ in got]))
    # inputs and labels stay paired
    for x, y in got:
        np.testing.assert_array_equal(y, (x[:, 0] // 3) % 3)


def test_batches_resume_matches_uninterrupted_run():
    s = _split(23)
    full = list(data.batches(s, 4, seed=7, epoch=2))
    resumed = list(data.batches(s, 4, seed=7, epoch=2, start_batch=3))
    assert len(resumed) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_batches_no_shuffle_keep_remainder():
    s = _split(10)
    got = list(data.batches(s, 4, seed=0, shuffle=False, drop_remainder=False))
    assert [len(y) for _, y in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), s.inputs)


def test_batches_bad_arguments():
    s = _split(5)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(s, 0, seed=0))
    with pytest.raises(ValueError, match="larger than the split"):
        next(data.batches(s, 6, seed=0))
    with pytest.raises(ValueError, match="start_batch"):
        next(data.batches(s, 2, seed=0, start_batch=5))
    with pytest.raises(TypeError, match="Split"):
        next(data.batches((s.inputs, s.labels), 2, seed=0))


def test_majority_baseline_and_token_dtype():
    assert data.majority_baseline(np.array([1, 1, 2, 0], np.int32)) == 0.5
    assert core.token_dtype(16) == np.uint8 and core.token_dtype(256) == np.uint8
    assert core.token_dtype(257) == np.int16


def test_byte_tokens_round_trip():
    docs = [b"hello \xff\x00 world", b"ab"]
    tok = core.byte_tokens(docs, 8)
    assert tok.dtype == np.int16 and tok.shape == (2, 8)
    assert core.bytes_to_text(tok[0]) == docs[0][:8]
    assert core.bytes_to_text(tok[1]) == b"ab" and (tok[1, 2:] == 0).all()


def test_get_task_rejects_unknown_name_and_option():
    with pytest.raises(ValueError, match="name must be one of"):
        data.get_task("nope")
    with pytest.raises(TypeError, match="unknown option"):
        data.get_task("delayed_sum", bogus=1)


def test_delayed_sum_labels_depend_on_first_and_last_token():
    task = data.get_task("delayed_sum", seq_len=64, num_symbols=5, num_train=300, num_val=50, num_test=50)
    x, y = task.train.inputs, task.train.labels
    assert x.shape == (300, 64) and x.dtype == np.uint8
    assert task.info["num_classes"] == 5 and task.info["vocab_size"] == 1 + 5 + 8
    np.testing.assert_array_equal(y, ((x[:, 0].astype(int) - 1) + (x[:, -1].astype(int) - 1)) % 5)
    assert (x[:, 1:-1] > 5).all()  # only noise in between
    assert set(task.info["majority_baseline"]) == {"train", "val", "test"}
    again = data.get_task("delayed_sum", seq_len=64, num_symbols=5, num_train=300, num_val=50, num_test=50)
    np.testing.assert_array_equal(again.train.inputs, x)
    other = data.get_task("delayed_sum", seed=1, seq_len=64, num_symbols=5, num_train=300, num_val=50, num_test=50)
    assert not np.array_equal(other.train.inputs, x)


def test_delayed_sum_key_position_respects_min_delay():
    task = data.get_task("delayed_sum", seq_len=50, num_symbols=3, min_delay=20, num_train=400,
                         num_val=10, num_test=10)
    x = task.train.inputs
    key_pos = np.argmax(x[:, :-1] <= 3, axis=1)
    assert ((x[:, :-1] <= 3).sum(axis=1) == 1).all()
    assert key_pos.max() <= 50 - 1 - 20 and key_pos.min() == 0
    with pytest.raises(ValueError, match="min_delay"):
        data.get_task("delayed_sum", seq_len=50, min_delay=50)


def test_split_repr_shows_shapes_not_data():
    assert repr(_split(4, 2)) == "Split(inputs=int32(4, 2), labels=int32(4,))"
