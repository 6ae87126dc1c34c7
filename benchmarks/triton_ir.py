"""Read the Triton kernels Pallas emits for the selective scan, without a GPU.

    python benchmarks/triton_ir.py --variant lanes [--num-warps 1] [--length 4096] [--batch 8] [--state-size 16] [--out DIR]

Exports the forward and the gradient for CUDA (``jax.export``, as the lowering tests do) with
``pallas_call(debug=True)``, which prints each kernel's Triton IR; runs that IR through the
CUDA pipeline of a local ``triton`` package (ttir -> ttgir -> llir -> ptx -> cubin with the
bundled ptxas, sm_90) and prints, per kernel: layout conversions, shared-memory operations,
barriers, shuffles, ex2 instructions in the PTX, and ptxas' registers / spill bytes. This is
the "read what costs no device time" step of benchmarks/NOTES.md. Needs ``triton`` (3.x)
importable: ``pip install triton`` on a Linux x86 machine works without a GPU; or point
``--triton-path`` at an unpacked wheel.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def triton_modules(variant, num_warps, length, batch=8, dim=1536, n=16, with_z=False,
                   segments=None, unroll=None, prefetch_bc=None, bwd_segments=None,
                   forward_only=False, dtype=jnp.bfloat16, **layout):
    """{kernel name: Triton IR text} for the forward and backward of one shape (with
    ``forward_only``: the forward of an undifferentiated call, which saves no states), the
    inputs u, delta, B, C (z) in ``dtype``."""
    from jax.experimental import pallas as pl
    from pallas_kernels.selective_scan import fused
    from pallas_kernels.selective_scan.testing import random_inputs

    args = random_inputs(jax.random.PRNGKey(0), batch, length, dim, n, None, dtype,
                         with_z=with_z)
    specs = [None if a is None else jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    present = tuple(i for i, a in enumerate(args) if a is not None)

    def loss(*a):
        out = fused.selective_scan_pallas(*a, delta_softplus=True, interpret=False,
                                          platform="gpu", variant=variant, num_warps=num_warps,
                                          segments=segments, unroll=unroll,
                                          prefetch_bc=prefetch_bc, bwd_segments=bwd_segments,
                                          **layout)
        return jnp.sum(out.astype(jnp.float32))

    def grad(*a):
        return jax.grad(loss, argnums=present)(*a)

    buf = io.StringIO()
    orig = fused.pl.pallas_call
    fused.pl.pallas_call = functools.partial(orig, debug=True)
    try:
        with contextlib.redirect_stdout(buf):
            triton_call = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
            jax.export.export(jax.jit(loss if forward_only else grad), platforms=["cuda"],
                              disabled_checks=[triton_call])(*specs)
    finally:
        fused.pl.pallas_call = orig
    del pl
    mods = {}
    for m in re.finditer(r"The Triton module for pallas_call (\w+).*?\n(.*?\n\} \[unknown\])",
                         buf.getvalue(), re.S):
        mods[m.group(1)] = _clean(m.group(2))
    return mods


def _clean(text):
    """Drop location attributes so that the IR parses on its own."""
    text = "\n".join(l for l in text.split("\n") if not l.startswith("#loc"))
    text = re.sub(r' "[^"]*"\(#loc\d+\)', "", text)
    text = re.sub(r" \[unknown\]|#loc\d*", "", text)
    start = text.index("module")
    return text[start:]


def compile_counts(name, ttir, num_warps, out_dir):
    """Run the Triton CUDA pipeline; return a dict of counts and ptxas' resource report."""
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend

    backend = CUDABackend(GPUTarget("cuda", 90, 32))
    path = os.path.join(out_dir, f"{name}.ttir")
    with open(path, "w") as f:
        f.write(ttir)
    ctx = ir.context()
    ir.load_dialects(ctx)
    backend.load_dialects(ctx)
    mod = ir.parse_mlir_module(path, ctx)
    mod.context = ctx
    opts = backend.parse_options(dict(num_warps=num_warps, num_stages=1))
    md = {}
    mod = backend.make_ttir(mod, md, opts, 90)
    mod = backend.make_ttgir(mod, md, opts, 90)
    ttgir = str(mod)
    llir = backend.make_llir(mod, md, opts, 90)
    ptx = backend.make_ptx(llir, md, opts, 90)
    for ext, text in (("ttgir", ttgir), ("ll", llir), ("ptx", ptx)):
        with open(os.path.join(out_dir, f"{name}.{ext}"), "w") as f:
            f.write(text)
    counts = {
        "convert_layout": ttgir.count("ttg.convert_layout"),
        "bar.sync": len(re.findall(r"\bbar\.sync|barrier\.sync", ptx)),
        "shared ld/st": len(re.findall(r"\b(ld|st)\.shared", ptx)),
        "shfl": ptx.count("shfl.sync"),
        "ex2": ptx.count("ex2.approx"),
        "ld.global": ptx.count("ld.global"),
        "st.global": ptx.count("st.global"),
    }
    counts.update(_ptxas(ptx, md.get("name", name), out_dir, name))
    return counts


def _ptxas(ptx, kernel, out_dir, name):
    """Registers and spill bytes from ptxas -v (the ptxas bundled with triton)."""
    import triton
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    src = os.path.join(out_dir, f"{name}.ptx")
    res = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", src, "-o",
                          os.path.join(out_dir, f"{name}.cubin")],
                         capture_output=True, text=True)
    report = res.stderr
    regs = re.search(r"Used (\d+) registers", report)
    spill = re.search(r"(\d+) bytes spill stores", report)
    counts = {"registers": int(regs.group(1)) if regs else None,
              "spill_bytes": int(spill.group(1)) if spill else None,
              "ptxas_rc": res.returncode}
    if res.returncode == 0:
        counts.update(_sass_loop(os.path.join(out_dir, f"{name}.cubin")))
    return counts


def _sass_loop(cubin):
    """The longest loop of the SASS (the kernel's time loop): its instruction count and the
    opcodes that fill it (cuobjdump, bundled with triton)."""
    import triton
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    sass = subprocess.run([tool, "-sass", cubin], capture_output=True, text=True).stdout
    instrs = [(int(m.group(1), 16), m.group(2), m.group(3)) for m in re.finditer(
        r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[^;]*;", sass)]
    loops = [(addr - int(t, 16), int(t, 16), addr) for addr, _, op in instrs if op == "BRA"
             for t in re.findall(r"BRA\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)",
                                 _line(sass, addr)) if int(t, 16) < addr]
    if not loops:
        return {}
    _, start, end = max(loops)
    body = [op for addr, _, op in instrs if start <= addr <= end]
    ops = {}
    for op in body:
        ops[op] = ops.get(op, 0) + 1
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
    return {"loop_sass": len(body), "loop_ops": dict(top)}


def _line(sass, addr):
    m = re.search(rf"/\*{addr:04x}\*/[^;]*;", sass)
    return m.group(0) if m else ""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="lanes")
    p.add_argument("--num-warps", type=int, default=None)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--state-size", type=int, default=16, help="N")
    p.add_argument("--z", action="store_true", help="with the z gate")
    p.add_argument("--segments", type=int, default=None, help="time segments (lanes forward)")
    p.add_argument("--unroll", type=int, default=None, help="steps a loop iteration (lanes)")
    p.add_argument("--bwd-segments", type=int, default=None, help="time segments (backward)")
    p.add_argument("--no-prefetch-bc", action="store_true",
                   help="the lanes forward loads B, C at their step")
    p.add_argument("--forward-only", action="store_true",
                   help="the forward of an undifferentiated call (no saved states)")
    p.add_argument("--split", type=int, default=None, help="lanes a channel (hybrid forward)")
    p.add_argument("--row-ahead", type=int, default=None,
                   help="iterations ahead the lanes forward loads u, delta")
    p.add_argument("--delta-tile", action="store_true",
                   help="split forward: delta on (S, bd) tiles of S steps")
    p.add_argument("--bwd-block-d", type=int, default=None, help="channels a backward program")
    p.add_argument("--bwd-num-warps", type=int, default=None, help="warps a backward program")
    p.add_argument("--chunk", type=int, default=None, help="T, steps a chunk of the backward")
    p.add_argument("--state-every", type=int, default=None,
                   help="m: the state saved every m chunks")
    p.add_argument("--out", default="/tmp/triton_ir")
    p.add_argument("--triton-path", default=None)
    a = p.parse_args()
    if a.triton_path:
        sys.path.insert(0, a.triton_path)
    os.makedirs(a.out, exist_ok=True)
    from pallas_kernels.selective_scan import choose_layout
    # the shape triton_modules exports (D 1536), for the warps each kernel is compiled with
    lay = choose_layout(a.length, 1536, a.state_size, 1, "gpu", False, batch=a.batch,
                        num_warps=a.num_warps,
                        variant=a.variant, split=a.split, bwd_block_d=a.bwd_block_d,
                        bwd_num_warps=a.bwd_num_warps, chunk=a.chunk,
                        state_every=a.state_every)
    mods = triton_modules(a.variant, lay.num_warps, a.length, batch=a.batch, n=a.state_size,
                          with_z=a.z, segments=a.segments,
                          unroll=a.unroll, prefetch_bc=False if a.no_prefetch_bc else None,
                          bwd_segments=a.bwd_segments, forward_only=a.forward_only,
                          split=a.split, row_ahead=a.row_ahead,
                          delta_tile=a.delta_tile or None, bwd_block_d=a.bwd_block_d,
                          bwd_num_warps=a.bwd_num_warps, chunk=a.chunk,
                          state_every=a.state_every)
    for name, ttir in mods.items():
        warps = (lay.bwd_num_warps if name.endswith("bwd")  # lanes kernels: their own warps
                 else 1 if name.endswith("link") else lay.num_warps)
        tag = f"{a.variant}_w{warps}_{name}"
        print(tag, compile_counts(tag, ttir, warps, a.out), flush=True)


if __name__ == "__main__":
    main()
