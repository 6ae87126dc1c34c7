"""Dispatching entry points for the hot operations (backend="xla" | "pallas" | "auto")."""
from ssm_jax.ops.selective_scan import selective_scan, selective_scan_ref  # noqa: F401
