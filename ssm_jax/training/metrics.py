"""Metrics: ``metrics.jsonl`` (one JSON object a line), TensorBoard events, a PNG plot.

Every row has ``step``, ``split`` ("train", "eval" or "test"), ``loss`` and ``accuracy``;
eval and test rows of classification tasks also carry ``majority_baseline`` (the accuracy
of always predicting the most frequent class of that split).
"""
from __future__ import annotations

import json
import os

METRICS_FILE = "metrics.jsonl"
SPLITS = ("train", "eval", "test")
REQUIRED_KEYS = ("step", "split", "loss", "accuracy")


def read_metrics(workdir: str) -> list[dict]:
    """All rows of ``workdir/metrics.jsonl`` (empty if there is none)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(workdir: str, last_step: int) -> None:
    """Drop rows after ``last_step`` (written by a run killed after its last checkpoint)."""
    rows = [r for r in read_metrics(workdir) if r["step"] <= last_step]
    with open(os.path.join(workdir, METRICS_FILE), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


class MetricWriter:
    """Appends metric rows to ``metrics.jsonl`` and to TensorBoard event files."""

    def __init__(self, workdir: str, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self._file = open(os.path.join(workdir, METRICS_FILE), "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, **values) -> dict:
        """Write one row; ``values`` must include ``loss`` and ``accuracy``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        missing = [k for k in ("loss", "accuracy") if k not in values]
        if missing:
            raise ValueError(f"a metrics row needs {missing}")
        row = {"step": int(step), "split": split, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(f"{split}/{k}", v, int(step))
        return row

    def close(self) -> None:
        """Flush and close the files."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _plain(v):
    if isinstance(v, (str, bool, int)) or v is None:
        return v
    return float(v)


def plot_curves(workdir: str, filename: str = "curves.png") -> str:
    """Plot loss and accuracy per split from ``metrics.jsonl`` into a PNG; returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(workdir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for split in SPLITS:
        sel = [r for r in rows if r["split"] == split]
        if not sel:
            continue
        steps = [r["step"] for r in sel]
        for ax, key in zip(axes, ("loss", "accuracy")):
            (line,) = ax.plot(steps, [r[key] for r in sel], label=split, marker="." if split != "train" else None)
        baselines = [r["majority_baseline"] for r in sel if "majority_baseline" in r]
        if baselines:
            axes[1].axhline(baselines[-1], ls="--", lw=0.8, color=line.get_color())
    axes[1].plot([], [], ls="--", color="gray", label="majority baseline (dashed, per split)")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(workdir, filename)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
