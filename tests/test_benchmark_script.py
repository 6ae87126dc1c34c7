"""benchmarks/selective_scan.py runs end to end on the CPU (kernels interpreted, tiny shape).

The GPU runs that fill BENCHMARKS.md use the same sections; this catches a broken script
before a device call is spent on it."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(tmp_path, *args):
    """Run benchmarks/selective_scan.py on the CPU; its rows by section, and its stdout.
    (N 4 or 8 where the sections allow: the interpreted kernels compile in time with N.)"""
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "selective_scan.py"),
           "--no-anchor", "--batch", "1", "--dim", "32", "--dtypes", "f32", "--reps", "1",
           "--inner", "1", *args, "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    by_section = {}
    for line in open(tmp_path / "results.jsonl"):
        r = json.loads(line)
        by_section.setdefault(r["section"], []).append(r)
    return by_section, res.stdout


def _load_benchmark(name):
    """A script under benchmarks/ imported as a module."""
    import importlib.util
    path = os.path.join(ROOT, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_time_and_dispatch_sections_write_rows(tmp_path):
    by_section, stdout = _run_script(
        tmp_path, "--sections", "check,time,dispatch", "--impls", "ours,xla", "--lengths",
        "16", "--modes", "fwd,fwd+z,bwd,step", "--state-size", "4")
    header = by_section["header"][0]
    assert header["variants"] == ["default"]
    sys.path.insert(0, ROOT)
    from benchmarks.selective_scan import kernels_sha
    assert header["kernels_sha"] == kernels_sha() and len(header["kernels_sha"]) == 12
    checks = by_section["check"]
    assert checks and all(r["rel_err_fwd_default"] < 1e-5 for r in checks)
    assert all(r["max_rel_err"] < 1e-4 for r in by_section["check_grad"])
    times = by_section["time"]
    assert {r["mode"] for r in times} == {"fwd", "fwd+z", "bwd", "step"}
    assert all(r["ours_ms"] > 0 and r["xla_ms"] > 0 for r in times)
    (dispatch,) = by_section["dispatch"]
    assert all(dispatch[f"{m}{k}"] > 0 for m in ("fwd", "bwd", "bwd_flat")
               for k in ("_ms", "_host_ms"))
    assert "| f32 | 16 | bwd |" in stdout


def test_sweep_and_tokens_sections_write_rows(tmp_path):
    """The layout sweep (a point's layout options, with z; the library's own default as a
    point) and the batch-1 tokens rows with their plot. (A separate run from the check and
    time sections, so that the two spread over the CI's test workers.)"""
    by_section, _ = _run_script(
        tmp_path, "--sections", "sweep,tokens", "--impls", "ours", "--token-min-log", "4",
        "--token-max-log", "6", "--token-modes", "fwd", "--token-reps", "1",
        "--sweep-length", "16", "--sweep",
        "hybrid:32:1:4:4:2,hybrid:split=2:segments=2:row_ahead=2:delta_tile=1,"
        "default:state_every=1", "--sweep-z", "--state-size", "4")
    assert [r["L"] for r in by_section["tokens"]] == [16, 64]
    assert (tmp_path / "tokens.png").stat().st_size > 1000       # the curves, drawn
    sweep, split, default = by_section["sweep"]
    assert default["variant"] == "default" and default["state_every"] == 1
    assert "error" not in default and default["bwd_ms"] > 0   # the library's own variant
    assert sweep["variant"] == "hybrid" and sweep["fwd_ms"] > 0 and sweep["bwd_ms"] > 0
    assert (sweep["block_d"], sweep["num_warps"], sweep["chunk"]) == (32, 1, 4)
    assert (split["split"], split["segments"], split["row_ahead"], split["delta_tile"]) == (
        2, 2, 2, 1)
    assert split["rel_err_fwd"] < 1e-5 and split["bwd_ms"] > 0
    assert split["rel_err_fwdz"] < 1e-5 and split["fwdz_ms"] > 0


def test_variants_with_options_reach_check_time_and_memory(tmp_path):
    """--variants entries take layout options (sweep-point syntax): each is checked, timed
    and its memory measured under its own column."""
    by_section, _ = _run_script(
        tmp_path, "--sections", "check,time,memory", "--impls", "ours", "--variants",
        "tiles,tiles:state_every=2", "--state-size", "8", "--lengths", "32", "--modes",
        "fwd,bwd")
    names = ("ours_tiles", "ours_tiles:state_every=2")
    checks = by_section["check"]
    assert checks and all(r["rel_err_fwd_" + n[5:]] < 1e-5 for r in checks for n in names)
    grads = by_section["check_grad"]
    assert {r["variant"] for r in grads} == {n[5:] for n in names}
    assert all(r["max_rel_err"] < 1e-4 for r in grads)
    times = by_section["time"]
    assert {r["mode"] for r in times} == {"fwd", "bwd"}
    assert all(r[n + "_ms"] > 0 for r in times for n in names)
    (mem,) = by_section["memory"]
    assert mem["N"] == 8 and all(r["N"] == 8 for r in times)
    assert all(mem[n + "_total_bytes"] > mem["input_bytes"] for n in names)


def test_kernels_sha_names_the_library_code(tmp_path):
    """The header's code hash changes with any kernel file's content and only with it."""
    sys.path.insert(0, ROOT)
    from benchmarks.selective_scan import kernels_sha
    for rel in ("pallas_kernels/selective_scan/a.py", "ssm_jax/ops/b.py", "ssm_jax/c.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    base = kernels_sha(str(tmp_path))
    (tmp_path / "ssm_jax/c.py").write_text("x = 2\n")          # outside the hashed code
    assert kernels_sha(str(tmp_path)) == base
    (tmp_path / "pallas_kernels/selective_scan/a.py").write_text("x = 2\n")
    assert kernels_sha(str(tmp_path)) != base


def test_time_parallel_experiment_imports_without_triton_and_picks_tiles():
    """benchmarks/time_parallel_triton.py (the raw-Triton experiment, GPU only) imports
    with neither triton nor jax_triton, and keeps a tile inside one group of B, C."""
    mod = _load_benchmark("time_parallel_triton")
    assert mod.time_parallel_blocks(1536, 1) == (4, 32, 4, 4)
    assert mod.time_parallel_blocks(70, 1, block_d=8) == (4, 32, 8, 4)     # G 1: a D tail
    assert mod.time_parallel_blocks(96, 2, block_d=64) == (4, 32, 32, 4)   # 32 divides 96
    assert mod.time_parallel_blocks(6, 3, steps=2, num_warps=1) == (2, 32, 1, 1)


def test_mosaic_gpu_experiment_matches_the_reference_and_lowers_for_cuda():
    """benchmarks/mosaic_gpu_scan.py (the forward in Pallas' Mosaic GPU backend, timed on a
    GPU against the Triton kernels): in the interpreter its chunk walk matches the
    reference (f32 with D skip and delta_bias, L not a multiple of the chunk, in 3 time
    segments linked between two passes; bf16 without them, in one pass), its variants (TMA
    pipeline, direct loads, unsegmented) lower for CUDA without a GPU, and a shape it does
    not take is refused naming the argument."""
    import jax
    import jax.numpy as jnp
    import pytest
    from pallas_kernels.selective_scan import selective_scan_ref
    from pallas_kernels.selective_scan.testing import random_inputs, rel_err
    mod = _load_benchmark("mosaic_gpu_scan")
    # (the interpreter walks the pipelined variant's chunks by plain loads, as the direct one)
    for dtype, every, tol, kw in ((jnp.float32, True, 1e-5, dict(chunk=4, segments=3)),
                                  (jnp.bfloat16, False, 1e-2, dict(chunk=4, segments=1))):
        u, delta, A, B, C, D, _, bias = random_inputs(
            jax.random.PRNGKey(1), 2, 37, 128, 5, None, dtype, with_D=every, with_z=False,
            with_bias=every)
        y = mod.selective_scan_mosaic_gpu(u, delta, A, B, C, D, bias, delta_softplus=True,
                                          interpret=True, **kw)
        ref = selective_scan_ref(u, delta, A, B, C, D, None, bias, delta_softplus=True)
        assert y.shape == ref.shape and y.dtype == ref.dtype
        assert rel_err(y, ref) < tol, (dtype, rel_err(y, ref))
    sizes = mod.lower(length=256, batch=1, dim=128, n=8)
    assert sorted(sizes) == ["direct", "pipelined", "unsegmented"]
    assert min(sizes.values()) > 0
    assert mod.default_segments(8, 1536, 4096) == 4 and mod.default_segments(1, 1536, 4096) == 32
    assert mod.default_segments(1, 1536, 1024) == 8         # segments of 128 steps at least
    with pytest.raises(ValueError, match="D must be a multiple of 128"):
        mod.selective_scan_mosaic_gpu(u[:, :, :64], delta[:, :, :64], A[:64], B, C)
    with pytest.raises(ValueError, match="groups are not supported") as e:
        mod.selective_scan_mosaic_gpu(u, delta, A, B[:, :, None], C)
    # a variant that fails is recorded with where it failed, also without a message
    text = mod.error_text(e.value)
    assert text.startswith("ValueError: B must have shape") and "selective_scan_mosaic_gpu" in text
    try:
        raise AssertionError()
    except AssertionError as empty:
        assert mod.error_text(empty).startswith("AssertionError:  (at test_benchmark_script.py:")


def test_tokens_rows_are_drawn(tmp_path):
    """The tokens section's curves (ns a token against L) are written as a PNG, from rows in
    memory and, through --plot-tokens, from a saved results.jsonl; rows without the
    columns are an error that says so."""
    import pytest
    sys.path.insert(0, ROOT)
    from benchmarks.selective_scan import plot_tokens
    rows = [dict(section="header")] + [
        dict(section="tokens", L=1 << k, batch=1, ours_fwd_ns_per_token=30.0 + k,
             ours_bwd_ns_per_token=80.0, anchor_fwd_ns_per_token=31.0) for k in (14, 12, 16)]
    path = plot_tokens(rows, str(tmp_path / "t.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no tokens rows"):
        plot_tokens(rows[:1], str(tmp_path / "none.png"))
    saved = tmp_path / "results.jsonl"
    saved.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "selective_scan.py"),
                          "--plot-tokens", str(saved), "--out", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "tokens.png").stat().st_size > 1000
