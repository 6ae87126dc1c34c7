"""The anchor: the official mamba-ssm selective-scan CUDA kernel, built in the same run.

The kernel's source comes from the mamba-ssm source distribution on PyPI, kept outside the
project in the git-ignored ``third_party_anchor/`` (fetch it with
``pip download --no-deps --no-binary :all: mamba-ssm -d third_party_anchor`` and unpack it).
It is compiled with ``torch.utils.cpp_extension.load`` for sm_90 only, with the nvcc flags
of its setup.py. Its interface is channels-first: u, delta (batch, D, L); B, C
(batch, G, N, L).
"""
from __future__ import annotations

import glob
import os
import time

NVCC_FLAGS = [  # mamba-ssm 2.3.2 setup.py, CUDA build, minus the other architectures
    "-O3", "-std=c++17",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
    "-lineinfo", "--threads", "4",
    "-gencode", "arch=compute_90,code=sm_90",
]


def source_dir(root="third_party_anchor"):
    """The unpacked sdist's csrc/selective_scan folder (unpacking the .tar.gz if needed)."""
    found = sorted(glob.glob(os.path.join(root, "mamba_ssm-*", "csrc", "selective_scan")))
    if not found:
        tars = sorted(glob.glob(os.path.join(root, "mamba_ssm-*.tar.gz")))
        if not tars:
            raise FileNotFoundError(f"no mamba_ssm sdist under {root}/")
        import tarfile
        with tarfile.open(tars[-1]) as tar:
            tar.extractall(root)
        found = sorted(glob.glob(os.path.join(root, "mamba_ssm-*", "csrc", "selective_scan")))
    return found[-1]


def build(build_dir="/tmp/anchor_build", root="third_party_anchor", verbose=False):
    """Compile (or reuse) the extension; returns (module, seconds spent)."""
    from torch.utils.cpp_extension import load
    src = source_dir(root)
    sources = [os.path.join(src, "selective_scan.cpp")] + sorted(glob.glob(os.path.join(src, "*.cu")))
    os.makedirs(build_dir, exist_ok=True)
    start = time.time()
    mod = load(name="selective_scan_cuda", sources=sources, extra_include_paths=[src],
               extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=NVCC_FLAGS,
               build_directory=build_dir, verbose=verbose)
    return mod, time.time() - start


def to_channels_first(args):
    """jax channels-last (u, delta, A, B, C, D, z, bias) -> torch tensors in mamba's layout."""
    import torch
    u, delta, A, B, C, D, z, bias = args

    def t(x):
        return None if x is None else torch.from_dlpack(x)

    def seq(x):
        return None if x is None else t(x).transpose(1, 2).contiguous()

    def bc(x):   # (b, L, N) or (b, L, G, N) -> (b, G, N, L)
        x = t(x)
        x = x.unsqueeze(2) if x.dim() == 3 else x
        return x.permute(0, 2, 3, 1).contiguous()
    return (seq(u), seq(delta), t(A).contiguous(), bc(B), bc(C),
            None if D is None else t(D).contiguous(), seq(z),
            None if bias is None else t(bias).contiguous())


def forward(mod, targs, softplus=True):
    """out (b, D, L) (gated by silu(z) when z is given), and x, the chunk states."""
    u, delta, A, B, C, D, z, bias = targs
    res = mod.fwd(u, delta, A, B, C, D, z, bias, softplus)
    out, x = res[0], res[1]
    return (res[2] if z is not None else out), x, out


def backward(mod, targs, dout, x, out, softplus=True):
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias, ...) for a forward without z."""
    u, delta, A, B, C, D, z, bias = targs
    return mod.bwd(u, delta, A, B, C, D, z, bias, dout, x, out, None, softplus, False)
