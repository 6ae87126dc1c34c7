"""XLA flags the entry points set before jax starts its backend (imports nothing of jax).

Seen with jaxlib 0.10.2 on the CPU: a model of two or more DenseSSM layers deadlocks in its
first train step under XLA:CPU's concurrency-optimized scheduler (the layers' independent
A_bar solves run concurrently and never finish). Only for the jaxlib 0.10 series: XLA
aborts on flags it does not know, and later versions were not checked.
"""
import os
from importlib import metadata  # the version without importing jaxlib (that would be too late)

CPU_XLA_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def apply() -> None:
    """Add :data:`CPU_XLA_FLAG` to ``XLA_FLAGS`` for jaxlib 0.10.x unless already set.

    Call before jax is imported (at the top of an entry point run as a program)."""
    if "xla_cpu_enable_concurrency_optimized_scheduler" in os.environ.get("XLA_FLAGS", ""):
        return
    if metadata.version("jaxlib").startswith("0.10."):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + CPU_XLA_FLAG).strip()
