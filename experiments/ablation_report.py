"""Tables, spectra and plots of the initialization ablation (``experiments/ablate_init.py``).

Three groups of small functions, each usable on its own:

* Spectra: the continuous state matrix A of a trained (or freshly built) model, read
  from its SSM layers, and its eigenvalues in the complex plane.

      S4 (DPLR):   A = diag(Lambda) - P P^*    over the conjugate-extended N states
                   (eigenvalues of this full N x N matrix, not just Lambda)
      S4D (diag):  the diagonal A, both members of each conjugate pair
      dense:       eig(A)

* Aggregation: one row per (init, frozen/trained A) with the mean and standard deviation
  over seeds of the final and best eval accuracy and of the test accuracy.
* Output: the rows as CSV and markdown, the eval curves (mean over seeds, a band of one
  standard deviation) and the eigenvalue scatter as PNG files (matplotlib, Agg).
"""
from __future__ import annotations

import csv
import math
import os

import numpy as np

from ssm_jax.layers.common import read
from ssm_jax.layers.dense import DenseSSM
from ssm_jax.layers.diagonal import DiagonalLayer
from ssm_jax.layers.s4 import S4
from ssm_jax.layers.selective import SelectiveLayer

# Summary fields of ``train_and_evaluate`` aggregated per row: (column prefix, getter).
METRICS = (
    ("final_eval", lambda s: s["final"].get("eval_accuracy")),
    ("best_eval", lambda s: s["best_eval_accuracy"]),
    ("test_at_best", lambda s: s["test_accuracy_at_best_eval"]),
    ("final_test", lambda s: s["final"].get("test_accuracy")),
)
MODES = ("frozen", "trained")


# ----------------------------------------------------------------------------- spectra


def ssm_layers(model) -> list:
    """The SSM layer of every residual block of a ``SequenceModel``, in order."""
    return [block.layer for block in model.blocks]


def dplr_full_matrix(Lambda, P) -> np.ndarray:
    """The conjugate-extended DPLR state matrix diag(Lambda_e) - sum_r p_r p_r^*.

    Lambda: (H, N/2) complex, one of each conjugate pair; P: (rank, H, N/2) complex.
    Returns (H, N, N) complex: per channel, the full matrix whose eigenvalues are those
    of the real N-state system (for the LegS init: -1, -2, ..., -N).
    """
    Lambda, P = np.asarray(Lambda, np.complex128), np.asarray(P, np.complex128)
    lam = np.concatenate([Lambda, Lambda.conj()], axis=-1)               # (H, N)
    p = np.concatenate([P, P.conj()], axis=-1)                           # (rank, H, N)
    low_rank = np.einsum("rhn,rhm->hnm", p, p.conj())
    return lam[:, :, None] * np.eye(lam.shape[-1]) - low_rank


def layer_eigenvalues(layer) -> np.ndarray:
    """Eigenvalues of the continuous A of one SSM layer (complex128, last axis N states).

    S4 (:class:`~ssm_jax.layers.s4.S4`): eig of :func:`dplr_full_matrix`, (H, N);
    dense (:class:`~ssm_jax.layers.dense.DenseSSM`): eig(A), (N,) (one A for all channels);
    diagonal layers (S4D and other :class:`~ssm_jax.layers.diagonal.DiagonalLayer`): the
    diagonal, both members of each conjugate pair, (H, N).

    The eigenvalues are computed in float64 from the stored (float32) parameters. HiPPO-LegS
    is far from normal, so its computed eigenvalues move visibly under rounding for N >~ 16
    (exactly -1, ..., -N; the float32-stored DPLR form gives a spread pseudospectrum).
    """
    if isinstance(layer, S4):
        Lambda, P = layer.continuous()[:2]
        return np.linalg.eigvals(dplr_full_matrix(Lambda, P))
    if isinstance(layer, DenseSSM):
        return np.linalg.eigvals(np.asarray(layer.A[...], np.float64))
    if isinstance(layer, DiagonalLayer):
        A = np.asarray(layer.variant.A(read(layer.ssm)), np.complex128)
        return np.concatenate([A, A.conj()], axis=-1) if layer.variant.conj_pairs else A
    if isinstance(layer, SelectiveLayer):  # Mamba-style: A (D, N) real and diagonal per channel
        return np.asarray(layer.variant.A(read(layer.ssm)), np.complex128)
    raise TypeError(f"cannot read the state matrix of a {type(layer).__name__} layer "
                    "(expected S4, DenseSSM, a DiagonalLayer or a SelectiveLayer)")


def model_eigenvalues(model) -> np.ndarray:
    """Eigenvalues of A of every SSM layer of a ``SequenceModel``, stacked over layers."""
    return np.stack([layer_eigenvalues(layer) for layer in ssm_layers(model)])


def layer_A_arrays(layer) -> dict:
    """The parameter arrays that define A in one SSM layer (frozen with ``trainable_A=False``)."""
    if isinstance(layer, S4):
        names = ("log_A_real", "A_imag", "P")
        return {n: np.asarray(getattr(layer, n)[...]) for n in names}
    if isinstance(layer, DenseSSM):
        return {"A": np.asarray(layer.A[...])}
    if isinstance(layer, (DiagonalLayer, SelectiveLayer)):
        return {k: np.asarray(layer.ssm[k][...]) for k in layer.variant.A_keys}
    raise TypeError(f"cannot read the A parameters of a {type(layer).__name__} layer")


def A_change(model_before, model_after) -> float:
    """Largest absolute change of any A-defining parameter between two models of one kind."""
    change = 0.0
    for a, b in zip(ssm_layers(model_before), ssm_layers(model_after)):
        before, after = layer_A_arrays(a), layer_A_arrays(b)
        change = max([change] + [float(np.max(np.abs(after[k] - before[k]))) for k in before])
    return change


# ----------------------------------------------------------------------------- aggregation


def mean_std(values) -> tuple[float, float]:
    """Mean and (population) standard deviation of the non-missing values; NaN if none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return math.nan, math.nan
    return float(np.mean(vals)), float(np.std(vals))


def aggregate(results: list[dict], init_order) -> list[dict]:
    """One row per (init, mode) from per-cell results.

    ``results``: dicts with ``init``, ``mode`` ("frozen" or "trained"), ``seed`` and
    ``summary`` (a ``train_and_evaluate`` summary). Rows come in ``init_order``, frozen
    before trained, and hold ``<metric>_mean`` / ``<metric>_std`` for each of
    :data:`METRICS`, the number of seeds, the trainable parameter count(s) (two counts joined by
    "/" flag cells built by different code) and the mean training time.
    """
    rows = []
    for init in init_order:
        for mode in MODES:
            cells = [r for r in results if r["init"] == init and r["mode"] == mode]
            if not cells:
                continue
            # trainable parameter counts; more than one means the cells are not comparable
            counts = sorted({c["summary"].get("num_params") for c in cells}, key=str)
            row = {"init": init, "A": mode, "seeds": len(cells), "params": "/".join(map(str, counts))}
            for name, get in METRICS:
                row[f"{name}_mean"], row[f"{name}_std"] = mean_std(get(c["summary"]) for c in cells)
            row["train_time_s"] = mean_std(c["summary"].get("train_time_s") for c in cells)[0]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- tables


def write_csv(rows: list[dict], path: str) -> str:
    """Write the rows (as :func:`aggregate` makes them) to a CSV file; returns the path."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _pct(mean: float, std: float, seeds: int) -> str:
    """Percent, with the std over seeds when there is more than one seed."""
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if seeds > 1 else f"{100 * mean:.1f}"


def markdown_table(rows: list[dict], labels: dict | None = None) -> str:
    """The rows as a markdown table of accuracies in percent (mean ± std over seeds)."""
    labels = labels or {}
    lines = ["| init | A | seeds | params | final eval acc | best eval acc | test acc (at best eval) "
             "| final test acc |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cols = [_pct(r[f"{m}_mean"], r[f"{m}_std"], r["seeds"]) for m, _ in METRICS]
        lines.append(f"| {labels.get(r['init'], r['init'])} | {r['A']} | {r['seeds']} | {r['params']} | "
                     + " | ".join(cols) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def eval_curve(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, accuracies) of the "eval" rows of one run's ``metrics.jsonl`` rows.

    A step logged twice (a run restarted before its first checkpoint) keeps its last row.
    """
    by_step = {r["step"]: r["accuracy"] for r in rows if r["split"] == "eval"}
    steps = np.array(sorted(by_step), dtype=int)
    return steps, np.array([by_step[s] for s in steps], dtype=float)


def mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]):
    """Mean and std over seeds of eval curves, on the steps all of them share."""
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    stacked = np.stack([a[np.isin(s, common)] for s, a in curves])
    return np.array(common), stacked.mean(axis=0), stacked.std(axis=0)


def _grid(n: int):
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def _save(plt, fig, axes, used: int, path: str) -> str:
    """Blank the unused panels, add the legend, write the PNG and close the figure."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(curves: dict, init_order, path: str, labels: dict | None = None, chance=None) -> str:
    """Eval accuracy against step, one panel per init, frozen and trained A in each.

    ``curves[(init, mode)]``: a list of (steps, accuracy) per seed. The line is the mean
    over seeds, the band one standard deviation. ``chance``: a dashed reference line (the
    majority-class baseline of the eval split).
    """
    plt = _pyplot()
    labels = labels or {}
    inits = [i for i in init_order if any((i, m) in curves for m in MODES)]
    nrows, ncols = _grid(len(inits))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.2 * nrows), sharey=True, squeeze=False)
    for ax, init in zip(axes.flat, inits):
        for mode, color in zip(MODES, ("tab:blue", "tab:orange")):
            if (init, mode) not in curves:
                continue
            steps, mean, std = mean_curve(curves[(init, mode)])
            ax.plot(steps, mean, color=color, label=f"{mode} A")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.25)
        if chance is not None:
            ax.axhline(chance, ls="--", lw=0.8, color="gray", label="majority baseline")
        ax.set_title(labels.get(init, init), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("eval accuracy")
    return _save(plt, fig, axes, len(inits), path)


def plot_eigenvalues(spectra: dict, init_order, path: str, labels: dict | None = None) -> str:
    """The eigenvalues of A in the complex plane, one panel per init.

    ``spectra[init]``: a dict with "initial" (eigenvalues at initialization) and
    optionally "trained" (after training with trainable A), complex arrays of any shape.
    """
    plt = _pyplot()
    labels = labels or {}
    inits = [i for i in init_order if i in spectra]
    nrows, ncols = _grid(len(inits))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.4 * nrows), squeeze=False)
    for ax, init in zip(axes.flat, inits):
        for key, style in (("initial", dict(s=16, c="tab:blue", marker="x")),
                           ("trained", dict(s=5, c="tab:orange", alpha=0.5))):
            if key in spectra[init]:
                ev = np.asarray(spectra[init][key]).ravel()
                ax.scatter(ev.real, ev.imag, label=f"{key} A", **style)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_title(labels.get(init, init), fontsize=10)
        ax.set_xlabel("Re(eigenvalue)")
        ax.set_ylabel("Im(eigenvalue)")
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, len(inits), path)


def write_outputs(workdir: str, rows: list[dict], curves: dict, spectra: dict, init_order, *,
                  labels: dict | None = None, chance=None, header: str = "") -> dict:
    """Write ``ablation.csv``, ``ablation.md``, ``curves.png`` and ``eigenvalues.png``.

    ``header`` is prose put above the markdown table (what is shared, what varies).
    Returns the paths by name.
    """
    paths = {"csv": write_csv(rows, os.path.join(workdir, "ablation.csv"))}
    paths["markdown"] = os.path.join(workdir, "ablation.md")
    with open(paths["markdown"], "w") as f:
        f.write((header + "\n\n" if header else "") + markdown_table(rows, labels) + "\n")
    paths["curves"] = plot_curves(curves, init_order, os.path.join(workdir, "curves.png"), labels, chance)
    paths["eigenvalues"] = plot_eigenvalues(spectra, init_order, os.path.join(workdir, "eigenvalues.png"), labels)
    return paths
