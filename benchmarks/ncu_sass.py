"""Opcode mix of each kernel from Nsight Compute's source page (gpu_profile.sh --sass):
executed warp instructions per opcode and the stall samples that fell on them.

    python benchmarks/ncu_sass.py sass.csv [--top 20]
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_table import _num  # noqa: E402


def read(path):
    """[(kernel name, header, rows)] from ``ncu --page source --csv`` (one block a kernel)."""
    blocks = []
    with open(path) as f:
        for line in f:
            if line.startswith('"Kernel Name"'):
                blocks.append([next(csv.reader([line]))[1], None, []])
            elif blocks and line.startswith('"'):
                row = next(csv.reader([line]))
                if row[0] == "Address":
                    blocks[-1][1] = row
                else:
                    blocks[-1][2].append(row)
    return blocks


def opcode(source):
    """The opcode of a SASS line, without its predicate and modifiers."""
    words = source.split()
    word = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    return word.split(".")[0]


def summary(name, header, rows, top=20):
    src, executed = header.index("Source"), header.index("Instructions Executed")
    samples = header.index("Warp Stall Sampling (All Samples)")
    counts, stalls = collections.Counter(), collections.Counter()
    for r in rows:
        op = opcode(r[src].strip() or "?")
        counts[op] += int(_num(r[executed]))
        stalls[op] += int(_num(r[samples]))
    total = sum(counts.values()) or 1
    lines = [f"{name}: {len(rows)} instructions, {total:,} executed (warp instructions)",
             "| opcode | share of executed | stall samples |", "| --- | --- | --- |"]
    lines += [f"| {op} | {100 * n / total:.1f}% | {stalls[op]} |"
              for op, n in counts.most_common(top)]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv")
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args()
    for name, header, rows in read(a.csv):
        if header:
            print(summary(name, header, rows, a.top), "\n")


if __name__ == "__main__":
    main()
