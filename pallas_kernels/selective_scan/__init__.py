"""Fused selective scan (Mamba): Pallas forward and backward kernels and their reference.

``selective_scan_pallas`` (see :mod:`.fused`) has the semantics of
``reference.selective_scan_ref``: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,
out_t = (C_t . h_t + D u_t) silu(z_t).
"""
from pallas_kernels.selective_scan.fused import choose_layout, selective_scan_pallas  # noqa: F401
from pallas_kernels.selective_scan.reference import selective_scan_ref  # noqa: F401
