from pallas_kernels.selective_scan.reference import selective_scan_ref  # noqa: F401
