"""Retrieval (LRA): byte-level AAN citation matching of document pairs, 2 x 4000, 2 classes.

Files: ``new_aan_pairs.train.tsv``, ``new_aan_pairs.eval.tsv``, ``new_aan_pairs.test.tsv``
(``lra_release/tsv_data/`` in https://storage.googleapis.com/long-range-arena/lra_release.gz).
Each line has five tab-separated fields and no header: ``label id1 id2 text1 text2``
(label 0/1, possibly written as a float "1.0"; quotes are not special, as in LRA).
Splits: train = train, val = eval, test = test.

Inputs int16 (n, 2, seq_len): [:, 0] is text1 and [:, 1] text2, each as byte tokens
(id = byte + 1, 0 = padding, vocab 257, as LRA's ByteTextEncoder), truncated to their
first ``seq_len`` (4000) bytes. ``info["dual"]`` is True: a dual encoder embeds both
documents with shared weights and classifies the pair.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssm_jax.data import core

SPLIT_FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv",
               "test": "new_aan_pairs.test.tsv"}
OFFICIAL_SOURCE = ("lra_release/tsv_data/ in https://storage.googleapis.com/long-range-arena/lra_release.gz "
                   "(Long Range Arena, ACL Anthology Network pairs)")


def find_folder(data_dir) -> Path:
    """The folder holding the three new_aan_pairs.*.tsv files under ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    for c in (data_dir, data_dir / "tsv_data", data_dir / "lra_release" / "tsv_data",
              data_dir / "lra_release" / "lra_release" / "tsv_data"):
        if all((c / f).is_file() for f in SPLIT_FILES.values()):
            return c
    missing = [data_dir / f for f in SPLIT_FILES.values() if not (data_dir / f).is_file()]
    raise core.missing_files_error(
        "retrieval", missing, where=f"{data_dir}/new_aan_pairs.{{train,eval,test}}.tsv "
                                    f"(also searched {data_dir}/tsv_data/ and {data_dir}/lra_release/tsv_data/)",
        source=OFFICIAL_SOURCE)


def read_tsv(path, seq_len: int) -> core.Split:
    """One AAN TSV: int16 byte tokens (n, 2, seq_len), int32 labels (n,)."""
    path = Path(path)
    docs1, docs2, labels = [], [], []
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        fields = line.split(b"\t")
        if len(fields) != 5:
            raise ValueError(f"{path}:{lineno}: expected 5 tab-separated fields "
                             f"(label, id1, id2, text1, text2), got {len(fields)}")
        try:
            label = float(fields[0])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: label must be 0 or 1, got {fields[0][:20]!r}") from None
        if label not in (0.0, 1.0):
            raise ValueError(f"{path}:{lineno}: label must be 0 or 1, got {label}")
        labels.append(int(label))
        docs1.append(fields[3])
        docs2.append(fields[4])
    inputs = np.stack([core.byte_tokens(docs1, seq_len), core.byte_tokens(docs2, seq_len)], axis=1)
    return core.Split(inputs.reshape(len(labels), 2, seq_len), np.asarray(labels, np.int32))


def load(*, data_dir=None, seed: int = 0, seq_len: int = 4000) -> core.Task:
    """AAN retrieval task from ``data_dir``; ``seed`` is unused (the splits are fixed files)."""
    del seed
    if data_dir is None:
        raise core.missing_files_error("retrieval", list(SPLIT_FILES.values()),
                                       where="pass data_dir=<folder holding new_aan_pairs.*.tsv>",
                                       source=OFFICIAL_SOURCE)
    core.check_positive_int(seq_len, "seq_len")
    folder = find_folder(data_dir)
    splits = {s: read_tsv(folder / f, seq_len) for s, f in SPLIT_FILES.items()}
    return core.make_task("retrieval", splits, num_classes=2, seq_len=seq_len, vocab_size=257,
                          pad_id=0, dual=True, files=str(folder))
