"""Progress display: steps, rate and ETA, as a tqdm bar and as log lines.

The tqdm bar is shown on an interactive terminal; log lines (``absl.logging``) are always
written every ``log_every`` steps so that a log file shows the same progress.
"""
from __future__ import annotations

import logging as std_logging
import os
import sys
import time

from absl import logging


def format_duration(seconds: float) -> str:
    """``3725.0 -> '1:02:05'``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Tracks steps from ``start_step`` to ``total_steps`` and reports rate and ETA."""

    def __init__(self, start_step: int, total_steps: int, *, log_every: int, bar: bool | None = None):
        self.start_step, self.total_steps, self.log_every = start_step, total_steps, max(1, log_every)
        self.step = start_step
        self._t0 = time.perf_counter()
        self._bar = None
        if bar is None:
            bar = sys.stderr.isatty()
        if bar:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def rate(self) -> float:
        """Steps per second since the start of this run."""
        elapsed = time.perf_counter() - self._t0
        return (self.step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float:
        """Seconds left at the current rate (inf before the first step)."""
        r = self.rate()
        return (self.total_steps - self.step) / r if r > 0 else float("inf")

    def update(self, step: int, **postfix) -> None:
        """Advance to ``step``; ``postfix`` (e.g. loss) is shown on the bar and log line."""
        if self._bar is not None:
            self._bar.update(step - self.step)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self.step = step
        if step % self.log_every == 0 or step == self.total_steps:
            eta = self.eta()
            extra = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
            logging.info("step %d/%d  %.2f steps/s  ETA %s  %s", step, self.total_steps, self.rate(),
                         format_duration(eta) if eta != float("inf") else "?", extra)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


class _DropChatter(std_logging.Filter):
    """Drops INFO records logged from inside the named packages (orbax logs every save)."""

    def __init__(self, packages):
        super().__init__()
        self.markers = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or not any(m in record.pathname for m in self.markers)


def quiet_library_logs(packages=("orbax",)) -> None:
    """Hide the INFO lines of ``packages`` from the absl log (warnings still show)."""
    logger = std_logging.getLogger("absl")
    if not any(isinstance(f, _DropChatter) for f in logger.filters):
        logger.addFilter(_DropChatter(packages))


def format_summary(summary: dict) -> str:
    """A few readable lines from a ``train_and_evaluate`` summary."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"
    base = summary.get("majority_baseline", {})
    final = summary.get("final", {})
    return "\n".join([
        f"task {summary.get('task')}: {summary.get('steps')} steps in {format_duration(summary.get('train_time_s', 0))}",
        f"best eval accuracy {pct(summary.get('best_eval_accuracy'))} at step {summary.get('best_eval_step')}"
        f" (majority baseline {pct(base.get('val'))})",
        f"test accuracy at that step {pct(summary.get('test_accuracy_at_best_eval'))}"
        f" (majority baseline {pct(base.get('test'))})",
        f"final: eval {pct(final.get('eval_accuracy'))}, test {pct(final.get('test_accuracy'))}, "
        f"train loss {final.get('train_loss', float('nan')):.4f}",
    ])
