"""Settings for the test session, applied before jax starts its backend.

The suite compiles through XLA:CPU at LLVM optimization level 1 instead of the default 2,
unless ``XLA_FLAGS`` already names a level. Most of the suite's time is XLA compiling the
interpreted Pallas kernels (large programs: ~300 kernels for one gradient), and O1 compiles
them ~25% faster: the whole suite took 3249 -> 2427 s of test CPU time, 27.5 -> 21.4 min on
2 cores (2026-12-04). Both sides of every comparison (ours and the reference) compile at
the same level; the outputs differ from O2's by float32 rounding (4.8e-7 at most on one
interpreted gradient). Subprocesses that the tests start inherit it through the
environment. ``XLA_FLAGS=--xla_backend_optimization_level=2 pytest`` runs the suite at
XLA's default.
"""
import os

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=1".strip()
