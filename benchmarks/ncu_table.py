"""Nsight Compute's raw CSV (``ncu --csv --page raw``) as a markdown table: a column per
kernel launch (the last launch of each kernel name), a row per metric.

    python benchmarks/ncu_table.py ncu.csv [--all]
"""
from __future__ import annotations

import argparse
import csv
import re


def read(path):
    """[(kernel name, {metric: value})] in launch order."""
    with open(path) as f:
        lines = [line for line in f if line.startswith('"')]
    rows = list(csv.reader(lines))
    if len(rows) < 3:
        return []
    header = rows[0]
    name_col = header.index("Kernel Name")
    # the raw page also lists every device and launch attribute: keep the counters asked for
    metric_cols = [i for i, h in enumerate(header)
                   if re.match(r"^(sm|smsp|gpu|dram|l1tex|lts)__", h)
                   or h in ("launch__grid_size", "launch__registers_per_thread")]
    return [(r[name_col], {header[i]: r[i] for i in metric_cols}) for r in rows[2:]]


def short(name):
    """The kernel's name without template arguments or a long parameter list."""
    return re.sub(r"[<(].*", "", name)[:40]


def table(launches, every=False):
    if not every:  # the last launch of each kernel (the first may include a warm-up)
        last = {}
        for name, m in launches:
            last[short(name)] = m
        launches = list(last.items())
    else:
        launches = [(short(n), m) for n, m in launches]
    metrics = sorted({k for _, m in launches for k in m})
    # stall rows under 0.05 warps an issue say nothing
    keep = [k for k in metrics if "stalled" not in k
            or any(_num(m.get(k)) >= 0.05 for _, m in launches)]
    lines = ["| metric | " + " | ".join(n for n, _ in launches) + " |",
             "| --- |" + " --- |" * len(launches)]
    for k in keep:
        label = (k.replace("smsp__average_warps_issue_stalled_", "stall ")
                 .replace("_per_issue_active.ratio", "")
                 .replace(".avg.pct_of_peak_sustained_active", " %")
                 .replace(".avg.pct_of_peak_sustained_elapsed", " %"))
        lines.append(f"| {label} | " + " | ".join(m.get(k, "-") for _, m in launches) + " |")
    return "\n".join(lines)


def _num(x):
    try:
        return float(str(x).replace(",", ""))
    except ValueError:
        return 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv")
    p.add_argument("--all", action="store_true", help="every launch, not the last of each")
    a = p.parse_args()
    print(table(read(a.csv), a.all))


if __name__ == "__main__":
    main()
