"""Bounded-time LRA training runs on a GPU, summarized as a table (for RESULTS.md).

    python benchmarks/lra_gpu_runs.py --seconds 120 --out DIR [--runs listops_s4d,pathfinder_s4d]

Each run is ``experiments.train``'s loop (``ssm_jax.training.train_and_evaluate``) on a
published LRA config (``configs/lra/<run>.py``) with the generated data sets shrunk to
``--num_train`` examples (ListOps and Pathfinder-32 are generated: no download) and
``max_train_time_s`` set, so each stops (evaluated) after ``--seconds`` of training.
Speed is the median over the logged training windows after the first (which holds the
compilation): steps/s, examples/s and input tokens/s.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import time

import jax

from ssm_jax.training import train_and_evaluate
from ssm_jax.training.metrics import read_metrics


def run_one(name: str, seconds: float, num_train: int, out: str) -> dict:
    config = importlib.import_module(f"configs.lra.{name}").get_config()
    opts = config.data.options
    for key, n in (("num_train", num_train), ("num_val", num_train // 10), ("num_test", num_train // 10)):
        if key in opts:
            opts[key] = n
    config.max_train_time_s = seconds
    config.eval_every = config.checkpoint_every = 200
    config.log_every = 50
    config.progress_bar = False
    workdir = os.path.join(out, name)
    start = time.perf_counter()
    summary, _ = train_and_evaluate(config, workdir)
    rows = [r for r in read_metrics(workdir) if r["split"] == "train"][1:]
    med = lambda key: statistics.median(r[key] for r in rows) if rows else float("nan")
    return dict(run=name, layer=config.model.layer, d_model=config.model.d_model, n_layers=config.model.n_layers,
                batch=config.batch_size, task=summary["task"],
                steps=summary["steps"], train_s=summary["train_time_s"], wall_s=round(time.perf_counter() - start, 1),
                steps_per_s=med("steps_per_s"), tokens_per_s=med("tokens_per_s"),
                best_eval=summary["best_eval_accuracy"], test_at_best=summary["test_accuracy_at_best_eval"],
                majority_eval=summary["majority_baseline"].get("val"), num_train=num_train)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", default="listops_s4d,pathfinder_s4d")
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--num_train", type=int, default=20000)
    p.add_argument("--out", default="/tmp/lra_gpu")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=repo).stdout.strip()
    header = dict(device=jax.devices()[0].device_kind, jax=jax.__version__, date=str(datetime.date.today()),
                  commit=commit or "unknown")
    print(json.dumps(header))
    results = []
    for name in args.runs.split(","):
        results.append(run_one(name, args.seconds, args.num_train, args.out))
        print(json.dumps(results[-1]), flush=True)
    with open(os.path.join(args.out, "lra_gpu_runs.json"), "w") as f:
        json.dump(dict(header, runs=results), f, indent=2)
    print("| run | model | steps | train s | steps/s | tokens/s | best eval acc | test acc there | majority (val) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['run']} | {r['layer']} {r['n_layers']}x{r['d_model']}, batch {r['batch']} | {r['steps']} | "
              f"{r['train_s']:.0f} | {r['steps_per_s']:.2f} | {r['tokens_per_s']:.3g} | {r['best_eval']:.3f} | "
              f"{r['test_at_best']:.3f} | {r['majority_eval']} |")


if __name__ == "__main__":
    main()
