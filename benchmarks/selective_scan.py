"""Selective scan on a GPU: check against the reference, then time ours against the anchor.

    python benchmarks/selective_scan.py [--sections check,time,memory,tokens,floor,sweep,dispatch]
                                        [--lengths 2048,4096,16384] [--out DIR] [--no-anchor]
                                        [--variants v2,tiles]

``--variants``: the kernel variants of ours (``selective_scan_pallas(variant=...)``) timed
side by side in the same run; their columns are ``ours_<variant>_ms`` (``ours_ms`` when only
one variant is given, as in earlier runs).

Ours is ``selective_scan_pallas`` (fused Pallas/Triton kernels); the plain-JAX baseline is
``ssm_jax.ops.selective_scan(..., backend="xla")`` (``lax.associative_scan``); the anchor is
the official mamba-ssm CUDA kernel compiled in this run (``benchmarks/mamba_anchor.py``).
Shapes: batch 8, D 1536, N 16, delta_softplus, D skip and delta_bias on; bf16 or float32
u, delta, B, C (z); A float32. Timing: warm-up, then the median of ``--reps`` samples, each
``--inner`` back-to-back calls between two device synchronizations, divided by ``--inner``.
The floor: bytes that must move (u, delta, B, C [, z] read, y written) over the bandwidth
of a large device copy, and batch*L*D*N exp2 over the measured exp2 rate.
Every section prints a table and appends JSON lines to ``--out``/results.jsonl.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pallas_kernels.selective_scan import selective_scan_pallas, selective_scan_ref  # noqa: E402
from pallas_kernels.selective_scan.testing import random_inputs, rel_err  # noqa: E402

BATCH, DIM, N_STATE = 8, 1536, 16
DTYPES = {"bf16": jnp.bfloat16, "f32": jnp.float32}
RESULTS = []
VARIANTS = ["default"]     # --variants: kernel variants of ours, timed side by side
# (block_d, num_warps, chunk) layouts the sweep section tries
SWEEP = [(16, 1, 16), (16, 2, 16), (32, 1, 16), (32, 2, 16), (32, 4, 16), (64, 2, 16),
         (64, 4, 16), (32, 2, 8), (128, 4, 8)]


def record(out_dir, **row):
    """Keep a result row (printed later) and append it to results.jsonl."""
    RESULTS.append(row)
    if out_dir:
        with open(os.path.join(out_dir, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


def append_row(out_dir, filename, **row):
    """Print a row as JSON and, with out_dir, append it to out_dir/filename (the experiment
    scripts beside this one, one file each: their ``record``)."""
    print(json.dumps(row), flush=True)
    if out_dir:
        with open(os.path.join(out_dir, filename), "a") as f:
            f.write(json.dumps(row) + "\n")


# Warm-up runs at least this long as well as ``warmup`` calls: the card idles at a low clock
# (345 MHz read before a run) and a few calls of a 0.1 ms kernel end before it has climbed,
# so the first timed rows (batch 1, 2^12 tokens) measured a slower clock than the rest.
WARMUP_S = 0.2


def _median_per_call(call, sync, reps, inner, warmup):
    """Warm up (one call for the compile, then ``warmup`` calls and WARMUP_S seconds), then
    the median over ``reps`` samples of ``inner`` back-to-back calls between two
    synchronizations, per call."""
    call()
    sync()
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < WARMUP_S:
        call()
        sync()
        done += 1
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            call()
        sync()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def time_jax(fn, *args, reps=25, inner=5, warmup=3):
    """Median seconds per call of a jitted fn (block_until_ready around each sample)."""
    out = []

    def call():
        out[:] = [fn(*args)]
    return _median_per_call(call, lambda: jax.block_until_ready(out[0]), reps, inner, warmup)


def time_torch(fn, reps=25, inner=5, warmup=3):
    """Median seconds per call of a torch CUDA fn (synchronize around each sample)."""
    import torch
    return _median_per_call(fn, torch.cuda.synchronize, reps, inner, warmup)


def inputs(length, dtype, batch=None, with_z=False, seed=0):
    batch = BATCH if batch is None else batch
    return random_inputs(jax.random.PRNGKey(seed), batch, length, DIM, N_STATE, None, dtype,
                         with_D=True, with_z=with_z, with_bias=True)


def ours_fwd(**layout):
    """Ours, jitted; one jit a layout, so that the sections (check, time, and the forward
    that bwd and step time from) share its compiles."""
    return _ours_fwd(tuple(sorted(layout.items())))


@functools.lru_cache(maxsize=None)
def _ours_fwd(layout):
    return jax.jit(functools.partial(selective_scan_pallas, delta_softplus=True, **dict(layout)))


def ours_impls():
    """Names of ours in the impl lists and result keys: "ours" or "ours_<variant>"."""
    return ["ours"] if len(VARIANTS) == 1 else [f"ours_{v}" for v in VARIANTS]


def variant_kwargs(v):
    """selective_scan_pallas keyword arguments for a --variants entry: a sweep point
    (:func:`parse_point`, e.g. "tiles", "hybrid:state_every=4"); the name "default" is the
    library's own variant (``variant=None``), with any options given after it."""
    return library_kwargs(parse_point(v))


def library_kwargs(layout):
    """A parsed point's selective_scan_pallas kwargs: variant "default" is ``variant=None``."""
    return {k: v for k, v in layout.items() if not (k == "variant" and v == "default")}


def kwargs_of(impl):
    """The keyword arguments of an "ours" / "ours_<variant>" impl."""
    return variant_kwargs(VARIANTS[0] if impl == "ours" else impl[len("ours_"):])


def expand_impls(impls):
    """Replace "ours" in an impl list by one entry per variant."""
    out = []
    for impl in impls:
        out += ours_impls() if impl == "ours" else [impl]
    return out


def _over_present(fn, args):
    """(f, xs): fn as a function of the inputs that are present (not None), and those."""
    present = [i for i, a in enumerate(args) if a is not None]

    def f(*xs):
        full = list(args)
        for i, x in zip(present, xs):
            full[i] = x
        return fn(*full)
    return f, [args[i] for i in present]


def _pullback(fn, args):
    """jax.vjp's pullback of fn at args, over the inputs that are present (not None)."""
    f, xs = _over_present(fn, args)
    return jax.vjp(f, *xs)[1]


def vjp_of(fn, args):
    """A jitted backward: dout -> grads of all present inputs (residuals from one forward)."""
    # The pullback (a pytree holding the residuals) is an argument of the jitted call, not
    # a closure: jit(pullback) captured the residuals as constants in the executable (4 GB
    # at batch 8 L 16384, 32 GB at batch 1 L 2^20, where the tokens row ran out of time).
    apply = jax.jit(lambda pb, ct: pb(ct))
    return functools.partial(apply, _pullback(fn, args))


def step_of(fn, args):
    """A jitted training step of the op: (present inputs, dout) -> their gradients, the
    forward that keeps what the backward reads and the backward in one call (as in
    ``jit(grad)`` of a model; the ``bwd`` mode times the backward alone)."""
    f, xs = _over_present(fn, args)
    jitted = jax.jit(lambda xs, dout: jax.vjp(f, *xs)[1](dout))
    return functools.partial(jitted, xs)


def vjp_flat_of(fn, args):
    """:func:`vjp_of` with the pullback's leaves flattened once: a call passes a flat list of
    arrays (the fast path of a jitted call), not the pullback pytree, which the host
    flattens again at every call."""
    leaves, tree = jax.tree_util.tree_flatten(_pullback(fn, args))
    apply = jax.jit(lambda lv, ct: jax.tree_util.tree_unflatten(tree, lv)(ct))
    return functools.partial(apply, leaves)


def host_ms(fn, *args, calls=20):
    """Host time per call of ``fn`` (ms): ``calls`` calls enqueued back to back, timed until
    the last returns, before any synchronization. Where it reaches the per-call time of
    :func:`time_jax`, that time is the host's dispatch, not the device's work."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    elapsed = time.perf_counter() - start
    jax.block_until_ready(out)
    return 1e3 * elapsed / calls


def dispatch(out_dir, lengths, reps, inner, batch=1):
    """Per call, the device time (time_jax) against the host's enqueue time, bf16, ours
    forward and backward (the pullback as a pytree argument, :func:`vjp_of`, and as flat
    leaves, :func:`vjp_flat_of`)."""
    for length in lengths:
        args = inputs(length, jnp.bfloat16, batch=batch, seed=5)
        fwd = ours_fwd()
        dout = fwd(*args)
        row = dict(section="dispatch", L=length, batch=batch)
        calls = {"fwd": (fwd, args)}
        for name, make in (("bwd", vjp_of), ("bwd_flat", vjp_flat_of)):
            pull = make(lambda *a: selective_scan_pallas(*a, delta_softplus=True), args)
            calls[name] = (pull, (dout,))
        for name, (fn, xs) in calls.items():
            row[f"{name}_ms"] = 1e3 * time_jax(fn, *xs, reps=reps, inner=inner)
            row[f"{name}_host_ms"] = host_ms(fn, *xs)
        record(out_dir, **row)
        print(row, flush=True)


def xla_fn(*a):
    from ssm_jax.ops import selective_scan
    return selective_scan(*a, delta_softplus=True, backend="xla")


def measure_floor(out_dir):
    """Device-copy bandwidth (bytes read + written) and exp2 rate, measured here."""
    x = jnp.ones((1 << 28,), jnp.float32)                        # 1 GiB
    copy = jax.jit(lambda v: v * 1.0000001)
    t = time_jax(copy, x, reps=20, inner=3)
    bandwidth = 2 * x.nbytes / t
    y = jax.random.uniform(jax.random.PRNGKey(0), (1 << 24,), jnp.float32)

    def many_exp(v):
        for _ in range(64):
            v = jnp.exp2(v * -0.7)
        return v
    t_exp = time_jax(jax.jit(many_exp), y, reps=20, inner=3)
    exp_rate = 64 * y.size / t_exp
    record(out_dir, section="floor", bandwidth_Bps=bandwidth, exp2_per_s=exp_rate)
    print(f"floor: copy bandwidth {bandwidth / 1e12:.2f} TB/s, exp2 {exp_rate / 1e12:.2f} T/s")
    return bandwidth, exp_rate


def floor_ms(length, dtype, mode, bandwidth, exp_rate, batch=None):
    """max(bytes / bandwidth, exps / exp rate) in ms for one call."""
    batch = BATCH if batch is None else batch
    item = jnp.dtype(dtype).itemsize
    seq = batch * length * DIM * item
    bc = 2 * batch * length * N_STATE * item
    if mode == "fwd":
        nbytes = 3 * seq + bc
    elif mode == "fwd+z":
        nbytes = 4 * seq + bc
    else:                        # bwd: read u, delta, dout, B, C; write du, ddelta, dB, dC
        nbytes = 5 * seq + 2 * bc
    if mode == "step":           # the forward's bytes and the backward's
        nbytes = 3 * seq + bc + 5 * seq + 2 * bc
    exps = batch * length * DIM * N_STATE * {"bwd": 2, "step": 3}.get(mode, 1)
    return 1e3 * max(nbytes / bandwidth, exps / exp_rate), nbytes


def check(lengths, out_dir, anchor, grads=True, dtypes=None):
    """Values (fwd, fwd+z) and gradients of ours (every variant) against the reference."""
    for name, dtype in DTYPES.items():
        if dtypes and name not in dtypes:
            continue
        for length in lengths:
            for with_z in (False, True):
                args = inputs(length, dtype, with_z=with_z, seed=length + with_z)
                ref = jax.jit(lambda *a: selective_scan_ref(*a, delta_softplus=True))(*args)
                row = dict(section="check", dtype=name, L=length, z=with_z)
                for v in VARIANTS:
                    row[f"rel_err_fwd_{v}"] = rel_err(ours_fwd(**variant_kwargs(v))(*args), ref)
                if anchor is not None:
                    targs = anchor_args(args)
                    a_out = anchor[0].forward(anchor[1], targs)[0]
                    row["anchor_rel_err_fwd"] = rel_err(jnp.asarray(
                        np.asarray(a_out.float().transpose(1, 2).cpu())), ref)
                record(out_dir, **row)
                print(row, flush=True)
            if length <= 4096 and grads:
                args = inputs(length, dtype, seed=length + 7)
                present = tuple(i for i, a in enumerate(args) if a is not None)
                dout = jax.random.normal(jax.random.PRNGKey(1), args[0].shape).astype(dtype)

                def loss(fn, **kw):
                    return lambda *a: jnp.sum(fn(*a, delta_softplus=True, **kw)
                                              .astype(jnp.float32) * dout)
                gr = jax.jit(jax.grad(loss(selective_scan_ref), argnums=present))(*args)
                for v in VARIANTS:
                    g = jax.jit(jax.grad(loss(selective_scan_pallas, **variant_kwargs(v)),
                                         argnums=present))(*args)
                    errs = {f"d{i}": rel_err(a, b) for i, a, b in zip(present, g, gr)}
                    row = dict(section="check_grad", variant=v, dtype=name, L=length,
                               max_rel_err=max(errs.values()), errs=errs)
                    record(out_dir, **row)
                    print(row, flush=True)


def anchor_args(args):
    from benchmarks import mamba_anchor
    return mamba_anchor.to_channels_first(args)


def bench_times(lengths, out_dir, anchor, floors, reps, inner, impls, xla_max=None,
                modes=("fwd", "fwd+z", "bwd")):
    """Forward, forward+z and backward times of ours (each variant), xla and the anchor.

    xla_max: {mode: largest L at which the xla path is timed} (it stores (batch, L, D, N)
    tensors: past the device memory an OOM costs a compile and a failed allocation)."""
    impls = expand_impls(impls)
    xla_max = xla_max or {}
    for name, dtype in DTYPES.items():
        for length in lengths:
            for mode in modes:
                args = inputs(length, dtype, with_z=mode == "fwd+z", seed=length)
                row = dict(section="time", dtype=name, L=length, mode=mode, batch=BATCH, D=DIM,
                           N=N_STATE)
                if floors:
                    row["floor_ms"], row["bytes"] = floor_ms(length, dtype, mode, *floors)
                for impl in impls:
                    if impl == "xla" and length > xla_max.get((name, mode), length):
                        row["xla_ms"], row["xla_error"] = None, "skipped: --xla-max"
                        continue
                    try:
                        row[impl + "_ms"] = 1e3 * time_impl(impl, mode, args, anchor, reps, inner)
                    except Exception as e:  # noqa: BLE001  (an OOM of the xla path is a result)
                        row[impl + "_ms"] = None
                        row[impl + "_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                record(out_dir, **row)
                print(row, flush=True)


def time_impl(impl, mode, args, anchor, reps, inner, warmup=3):
    if impl.startswith("ours"):
        kwargs = kwargs_of(impl)
        fwd = ours_fwd(**kwargs)
        ours = functools.partial(selective_scan_pallas, delta_softplus=True, **kwargs)
        if mode == "bwd":
            pull = vjp_of(ours, args)
            return time_jax(pull, fwd(*args), reps=reps, inner=inner, warmup=warmup)
        if mode == "step":
            return time_jax(step_of(ours, args), fwd(*args), reps=reps, inner=inner,
                            warmup=warmup)
        return time_jax(fwd, *args, reps=reps, inner=inner, warmup=warmup)
    if impl == "xla":
        if mode == "bwd":
            pull = vjp_of(xla_fn, args)
            return time_jax(pull, jax.jit(xla_fn)(*args), reps=reps, inner=inner)
        if mode == "step":
            return time_jax(step_of(xla_fn, args), jax.jit(xla_fn)(*args), reps=reps,
                            inner=inner)
        return time_jax(jax.jit(xla_fn), *args, reps=reps, inner=inner)
    if impl == "anchor":
        if anchor is None:
            raise RuntimeError("anchor not built")
        mod_py, mod = anchor
        targs = anchor_args(args)
        if mode in ("bwd", "step"):
            import torch
            _, x, out = mod_py.forward(mod, targs)
            dout = torch.randn_like(out)
            if mode == "bwd":
                return time_torch(lambda: mod_py.backward(mod, targs, dout, x, out), reps,
                                  inner, warmup)

            def step():            # its forward (keeping its chunk states) and backward
                _, x_, out_ = mod_py.forward(mod, targs)
                return mod_py.backward(mod, targs, dout, x_, out_)
            return time_torch(step, reps, inner, warmup)
        return time_torch(lambda: mod_py.forward(mod, targs), reps, inner, warmup)
    raise ValueError(impl)


def memory(lengths, out_dir):
    """Compiled memory of forward+backward (temp + arguments + outputs), ours (each variant)
    against xla."""
    for length in lengths:
        args = inputs(length, jnp.bfloat16, seed=1)
        present = tuple(i for i, a in enumerate(args) if a is not None)
        row = dict(section="memory", L=length, batch=BATCH, D=DIM, N=N_STATE, dtype="bf16",
                   input_bytes=int(sum(args[i].nbytes for i in present)))
        fns = {impl: functools.partial(selective_scan_pallas, delta_softplus=True,
                                       **kwargs_of(impl)) for impl in ours_impls()}
        fns["xla"] = xla_fn
        for impl, fn in fns.items():
            grad = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32)),
                                    argnums=present))
            try:
                mem = grad.lower(*args).compile().memory_analysis()
                row[impl + "_temp_bytes"] = int(mem.temp_size_in_bytes)
                row[impl + "_total_bytes"] = int(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                                 + mem.output_size_in_bytes)
            except Exception as e:  # noqa: BLE001
                row[impl + "_error"] = f"{type(e).__name__}: {str(e)[:200]}"
        record(out_dir, **row)
        print(row, flush=True)


def tokens(out_dir, anchor, reps, inner, modes, max_log=20, min_log=12):
    """Batch 1, L = 2^12 .. 2^max_log: time per token of forward (and backward) (bf16).

    One warm-up call. A sample is ``inner`` calls up to L = 2^16 (so that host dispatch,
    ~0.2 ms a call, does not count as kernel time, as in the other sections), one above.
    With ``out_dir``, the curves are also drawn to ``tokens.png`` there."""
    rows = []
    for log_l in range(min_log, max_log + 1, 2):
        length = 1 << log_l
        inner_l = inner if log_l <= 16 else 1
        args = inputs(length, jnp.bfloat16, batch=1, seed=log_l)
        row = dict(section="tokens", L=length, batch=1)
        for impl in ours_impls():
            for mode in modes:
                try:
                    row[f"{impl}_{mode}_ms"] = 1e3 * time_impl(impl, mode, args, None, reps,
                                                               inner_l, warmup=1)
                except Exception as e:  # noqa: BLE001
                    row[f"{impl}_{mode}_error"] = f"{type(e).__name__}: {str(e)[:200]}"
        if anchor is not None:
            for mode in modes:
                row[f"anchor_{mode}_ms"] = 1e3 * time_impl("anchor", mode, args, anchor, reps,
                                                           inner_l, warmup=1)
        for k in list(row):
            if k.endswith("_ms"):
                row[k.replace("_ms", "_ns_per_token")] = 1e6 * row[k] / length
        record(out_dir, **row)
        rows.append(row)
        print(row, flush=True)
    if out_dir and rows:
        print("plot:", plot_tokens(rows, os.path.join(out_dir, "tokens.png")), flush=True)


def plot_tokens(rows, path, title="batch 1, time per token"):
    """Draw the tokens section's rows: ns a token against L (log 2), one line for each
    ``<impl>_<mode>_ns_per_token`` column (ours solid, the official kernel dashed); write
    the PNG to ``path`` and return it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = sorted((r for r in rows if r.get("section") == "tokens"), key=lambda r: r["L"])
    columns = sorted({k for r in rows for k in r if k.endswith("_ns_per_token")})
    if not columns:
        raise ValueError("plot_tokens: no tokens rows with *_ns_per_token columns")
    modes = sorted({col.split("_")[-4] for col in columns})   # <impl>_<mode>_ns_per_token
    fig, ax = plt.subplots(figsize=(6, 4))
    for col in columns:
        pts = [(r["L"], r[col]) for r in rows if col in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                color=f"C{modes.index(col.split('_')[-4])}",
                linestyle="--" if col.startswith("anchor") else "-",
                label=col.replace("_ns_per_token", "").replace("anchor", "official"))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L (tokens)")
    ax.set_ylabel("ns a token")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


SWEEP_FIELDS = ("block_d", "num_warps", "chunk", "unroll", "segments", "prefetch_bc",
                "bwd_segments")


def parse_point(text):
    """"variant[:v1[:v2 ...]][:name=value ...]" -> selective_scan_pallas layout kwargs: the
    positional values fill SWEEP_FIELDS in order, named ones any layout argument (split,
    row_ahead, ...); prefetch_bc is 0 or 1, unset fields are the library's choice."""
    variant, *tokens = text.split(":")
    layout = dict(variant=variant)
    positional = [t for t in tokens if "=" not in t]
    layout.update(zip(SWEEP_FIELDS, map(int, positional)))
    layout.update((k, int(v)) for k, v in (t.split("=") for t in tokens if "=" in t))
    if "prefetch_bc" in layout:
        layout["prefetch_bc"] = bool(layout["prefetch_bc"])
    return layout


def sweep(out_dir, length, reps, inner, points=None, backward=True, anchor=None,
          with_z=False):
    """Layouts of ours at one shape, forward (and backward), bf16; the anchor at the same
    shape first when built (so a point's ratio to it is from the same process).

    ``points``: [layout kwargs] (:func:`parse_point`); default SWEEP x --variants.
    ``with_z``: also the forward with the z gate (``fwdz_ms``, checked like the forward)."""
    args = inputs(length, jnp.bfloat16, seed=3)
    ref = jax.jit(lambda *a: selective_scan_ref(*a, delta_softplus=True))(*args)
    zargs = zref = None
    if with_z:
        zargs = inputs(length, jnp.bfloat16, with_z=True, seed=4)
        zref = jax.jit(lambda *a: selective_scan_ref(*a, delta_softplus=True))(*zargs)
    if anchor is not None:
        row = dict(section="sweep", L=length, batch=args[0].shape[0], variant="anchor")
        for mode in ("fwd", "bwd") if backward else ("fwd",):
            row[f"{mode}_ms"] = 1e3 * time_impl("anchor", mode, args, anchor, reps, inner)
        if with_z:
            row["fwdz_ms"] = 1e3 * time_impl("anchor", "fwd", zargs, anchor, reps, inner)
        record(out_dir, **row)
        print(row, flush=True)
    points = points or [dict(zip(SWEEP_FIELDS, x), variant=v) for x in SWEEP for v in VARIANTS]
    for layout in points:
        row = dict(section="sweep", L=length, batch=args[0].shape[0], **layout)
        layout = library_kwargs(layout)                  # "default": the library's choice
        try:
            fwd = ours_fwd(**layout)
            row["rel_err_fwd"] = rel_err(fwd(*args), ref)
            row["fwd_ms"] = 1e3 * time_jax(fwd, *args, reps=reps, inner=inner)
            if with_z:
                row["rel_err_fwdz"] = rel_err(fwd(*zargs), zref)
                row["fwdz_ms"] = 1e3 * time_jax(fwd, *zargs, reps=reps, inner=inner)
            if backward:
                pull = vjp_of(lambda *a: selective_scan_pallas(*a, delta_softplus=True,
                                                               **layout), args)
                row["bwd_ms"] = 1e3 * time_jax(pull, fwd(*args), reps=reps, inner=inner)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        record(out_dir, **row)
        print(row, flush=True)


def print_table():
    """The time rows as a markdown table (what BENCHMARKS.md records)."""
    rows = [r for r in RESULTS if r.get("section") == "time"]
    if not rows:
        return
    ours = ours_impls()
    names = [o.replace("ours_", "") if len(ours) > 1 else "ours" for o in ours]
    print("\n| dtype | L | mode | " + " | ".join(f"{n} ms" for n in names)
          + " | anchor ms | xla ms | floor ms | "
          + " | ".join(f"{n} vs anchor | {n} vs xla" for n in names) + " |")
    print("|" + " --- |" * (6 + 3 * len(names)))

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{b / a:.2f}x"
    for r in rows:
        a, x = r.get("anchor_ms"), r.get("xla_ms")
        os_ = [r.get(o + "_ms") for o in ours]
        print(f"| {r['dtype']} | {r['L']} | {r['mode']} | " + " | ".join(f(o) for o in os_)
              + f" | {f(a)} | {f(x)} | {f(r.get('floor_ms'))} | "
              + " | ".join(f"{ratio(o, a)} | {ratio(o, x)}" for o in os_) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="floor,check,time,memory,tokens")
    p.add_argument("--lengths", default="2048,4096,16384")
    p.add_argument("--impls", default="ours,anchor,xla")
    p.add_argument("--out", default=os.environ.get("OUT", ""))
    p.add_argument("--no-anchor", action="store_true")
    p.add_argument("--reps", type=int, default=25)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--sweep-length", type=int, default=4096)
    p.add_argument("--sweep", default="", help="sweep points variant:block_d:num_warps:chunk"
                   "[:unroll[:segments[:prefetch_bc[:bwd_segments]]]][:name=value...], e.g. "
                   "hybrid:32:1:4:4:16:0:4,tiles:32:2:8,hybrid:split=4:segments=1 "
                   "(default: SWEEP x --variants)")
    p.add_argument("--sweep-fwd-only", action="store_true", help="sweep: forward only")
    p.add_argument("--sweep-z", action="store_true", help="sweep: the forward with z too")
    p.add_argument("--dtypes", default="bf16,f32")
    p.add_argument("--token-modes", default="fwd,bwd")
    p.add_argument("--modes", default="fwd,fwd+z,bwd",
                   help="modes of the time section; also step: forward and backward in one "
                        "call, as a training step runs them")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--state-size", type=int, default=16, help="N")
    p.add_argument("--variants", default="default",
                   help="kernel variants of ours timed side by side, e.g. hybrid,tiles or "
                   "default,default:state_every=4 (sweep-point syntax; \"default\": "
                   "selective_scan_pallas' own choice)")
    p.add_argument("--check-lengths", default=None, help="lengths of the check section "
                   "(default: --lengths)")
    p.add_argument("--check-dtypes", default=None, help="dtypes of the check section")
    p.add_argument("--no-check-grads", action="store_true")
    p.add_argument("--token-reps", type=int, default=20)
    p.add_argument("--token-max-log", type=int, default=20)
    p.add_argument("--token-min-log", type=int, default=12)
    p.add_argument("--plot-tokens", default=None, metavar="RESULTS_JSONL",
                   help="only draw the tokens rows of a saved results.jsonl to "
                        "--out/tokens.png (no device needed), then exit")
    p.add_argument("--xla-max",
                   default="bf16:bwd:2048,f32:bwd:2048,bf16:step:2048,f32:step:2048",
                   help="largest L timed for xla per dtype:mode, e.g. f32:bwd:4096,bf16:bwd:16384"
                   " (default: the xla backward and step only to L 2048: at 4096 its backward"
                   " ran out of the call's time in bf16 and out of memory in f32, BENCHMARKS.md"
                   " run 9)")
    a = p.parse_args()
    if a.plot_tokens:
        with open(a.plot_tokens) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        print(plot_tokens(rows, os.path.join(a.out or ".", "tokens.png"),
                          title=f"batch 1, time per token\n{os.path.basename(a.plot_tokens)}"))
        return
    globals().update(BATCH=a.batch, DIM=a.dim, N_STATE=a.state_size)
    VARIANTS[:] = a.variants.split(",")
    xla_max = {}
    for item in filter(None, a.xla_max.split(",")):
        dt, mode, max_l = item.split(":")
        xla_max[(dt, mode)] = int(max_l)
    for name in set(DTYPES) - set(a.dtypes.split(",")):
        del DTYPES[name]
    sections = a.sections.split(",")
    lengths = [int(x) for x in a.lengths.split(",")]
    commit = os.environ.get("BENCH_COMMIT") or _git_commit()
    dev = jax.devices()[0]
    header = dict(section="header", device=dev.device_kind, platform=dev.platform,
                  variants=VARIANTS,
                  jax=jax.__version__, date=datetime.datetime.utcnow().isoformat(timespec="seconds"),
                  commit=commit, kernels_sha=kernels_sha())
    anchor = None
    if not a.no_anchor and ("anchor" in a.impls or "check" in sections):
        try:
            import torch
            from benchmarks import mamba_anchor
            mod, secs = mamba_anchor.build()
            anchor = (mamba_anchor, mod)
            header.update(torch=torch.__version__, anchor_build_s=round(secs, 1))
        except Exception as e:  # noqa: BLE001
            header["anchor_error"] = f"{type(e).__name__}: {str(e)[:500]}"
    record(a.out, **header)
    print(header, flush=True)
    floors = measure_floor(a.out) if "floor" in sections else None
    if "sweep" in sections:
        points = [parse_point(x) for x in filter(None, a.sweep.split(","))]
        sweep(a.out, a.sweep_length, a.reps, a.inner, points, backward=not a.sweep_fwd_only,
              anchor=anchor, with_z=a.sweep_z)
    if "check" in sections:
        check_lengths = [int(x) for x in (a.check_lengths or a.lengths).split(",")]
        check(check_lengths, a.out, anchor, grads=not a.no_check_grads,
              dtypes=a.check_dtypes.split(",") if a.check_dtypes else None)
    if "time" in sections:
        bench_times(lengths, a.out, anchor, floors, a.reps, a.inner, a.impls.split(","),
                    xla_max, a.modes.split(","))
    if "memory" in sections:
        memory(lengths, a.out)
    if "dispatch" in sections:
        dispatch(a.out, lengths, a.reps, a.inner, batch=a.batch)
    if "tokens" in sections:
        tokens(a.out, anchor, a.token_reps, a.inner, a.token_modes.split(","),
               a.token_max_log, a.token_min_log)
    print_table()


def _git_commit():
    """HEAD's short hash, "+dirty" where tracked files differ from it: a device's copy of the
    working tree can carry an older .git than the code it runs (run 46 reported its
    session's first commit); :func:`kernels_sha` names the code itself."""
    try:
        head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       cwd=ROOT, stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT,
                               stderr=subprocess.DEVNULL).returncode != 0
        return head + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


def kernels_sha(root=None):
    """sha1 (12 hex digits) of the library code a row measured: every .py file under
    pallas_kernels/ and ssm_jax/ops/, by relative path and content. The same files give the
    same hash on any machine, with or without git, so a row's hash is matched to a commit by
    computing it in a checkout of that commit (``kernels_sha(path)``)."""
    root = root or ROOT
    digest = hashlib.sha1()
    for top in ("pallas_kernels", os.path.join("ssm_jax", "ops")):
        for dirpath, dirnames, filenames in sorted(os.walk(os.path.join(root, top))):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    digest.update(os.path.relpath(path, root).replace(os.sep, "/").encode())
                    with open(path, "rb") as f:
                        digest.update(f.read())
    return digest.hexdigest()[:12]


if __name__ == "__main__":
    main()
