"""Pathfinder (LRA) and Path-X: are the two circles on the same dashed contour? Binary.

Images are grayscale, ``resolution`` x ``resolution`` (32, 64; 128 is Path-X), white
strokes on black. Each image shows two long dashed contours of ``contour_length``
paddles (short dashes along a smooth random curve), several short distractor contours,
and two circular markers. Label 1: both markers sit on the two ends of the same long
contour; label 0: one marker on an end of each long contour. The difficulty levels are
LRA's: "curv_baseline" (contour length 6), "curv_contour_length_9" (9) and
"curv_contour_length_14" (14, the level LRA and S4 report).

The drawing never looks at the label, and the second long contour is placed so that
one of its ends is (as nearly as the free space allows) as far from the first marker as
the first contour's other end; the label only decides which of the two gets the second
marker. So the distance between the markers says little about the label: from it alone
a held-out classifier scores 50-55% (without this control, a distance threshold scored
77% on 32x32 baseline images). Large sets are generated in chunks, in parallel worker
processes (`generate_folder`).

Folder layout (official, and written by our generator), for one difficulty::

    <root>/<difficulty>/imgs/<i>/sample_<j>.png
    <root>/<difficulty>/metadata/<i>.npy

Despite the suffix, each metadata file is text, one line per image, space separated:
``imgs/<i> sample_<j>.png <j> <label> ...`` (LRA reads field 0 and 1 as the image path
and field 3 as the label). Official data: ``lra_release/pathfinder{32,64,128}/`` in
https://storage.googleapis.com/long-range-arena/lra_release.gz (Path-X is pathfinder128).

Loader conventions: images are read in metadata order (metadata files sorted by their
number, lines in file order); unreadable or empty images are skipped (LRA filters empty
images too; their count is ``info["skipped"]``). Splits for the official files follow
LRA: the first 80% train, next 10% val, last 10% test. Generated sets are written in
train, val, test order and split by ``num_train`` / ``num_val`` / ``num_test``.

Inputs: uint8 pixels (n, resolution**2) in row-major (raster) order, vocab 256, like
LRA's tokens. With ``as_float=True``: float32 (n, resolution**2, 1) scaled to [-1, 1]
(x / 255 - 0.5) / 0.5, as S4's Normalize(mean=0.5, std=0.5).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ssm_jax.data import core

DIFFICULTIES = {"curv_baseline": 6, "curv_contour_length_9": 9, "curv_contour_length_14": 14}
OFFICIAL_SOURCE = ("lra_release/pathfinder{32,64,128}/ in "
                   "https://storage.googleapis.com/long-range-arena/lra_release.gz (Long Range Arena; "
                   "Path-X is pathfinder128)")


@dataclasses.dataclass(frozen=True)
class Style:
    """Drawing parameters of one resolution (pixels), after LRA's pathfinder settings."""

    dash: float           # length of a paddle (dash)
    gap: float            # empty space between consecutive paddles
    thickness: float      # stroke width
    marker_radius: float
    distractor_budget: int  # distractor paddles in total (LRA: 20, 22, 35)
    max_turn: float = np.pi / 3.5  # spread of heading changes from one paddle to the next


# A contour of 14 paddles spans about the image width, as in LRA's images.
STYLES = {
    32: Style(dash=1.5, gap=0.75, thickness=1.0, marker_radius=1.5, distractor_budget=20),
    64: Style(dash=3.0, gap=1.5, thickness=1.0, marker_radius=2.5, distractor_budget=22),
    128: Style(dash=6.0, gap=3.0, thickness=1.5, marker_radius=3.0, distractor_budget=35),
}


# ----------------------------------------------------------------------------- geometry

def _random_shapes(rng: np.random.Generator, shape: tuple, num_paddles: int, style: Style) -> np.ndarray:
    """Smooth random polylines starting at the origin: vertices (*shape, P+1, 2).

    Headings follow a constant curvature plus a bounded random turn per paddle.
    """
    step = style.dash + style.gap
    curvature = rng.uniform(-0.25, 0.25, shape + (1,)) * style.max_turn
    turns = curvature + rng.uniform(-0.5, 0.5, shape + (num_paddles,)) * style.max_turn
    turns[..., 0] = 0.0
    heading = rng.uniform(0, 2 * np.pi, shape + (1,)) + np.cumsum(turns, axis=-1)
    steps = np.stack([np.cos(heading), np.sin(heading)], axis=-1) * step
    return np.concatenate([np.zeros(shape + (1, 2)), np.cumsum(steps, axis=-2)], axis=-2)


def _place(rng: np.random.Generator, verts: np.ndarray, resolution: int, margin: float,
           tries: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random shifts that put polylines (..., P+1, 2) inside the image, ``margin`` from the border.

    Returns (offsets (..., tries, 2), fits (...)): ``tries`` random shifts of each
    polyline; ``fits`` is False where its bounding box is larger than the image.
    """
    lo, hi = verts.min(axis=-2), verts.max(axis=-2)
    room = (resolution - 1 - 2 * margin) - (hi - lo)
    u = rng.uniform(0, 1, room.shape[:-1] + (tries, 2))
    offsets = (margin - lo)[..., None, :] + u * np.clip(room, 0, None)[..., None, :]
    return offsets, (room >= 0).all(axis=-1)


def _dash_points(verts: np.ndarray, style: Style, spacing: float = 0.3) -> np.ndarray:
    """Points sampled along each paddle (dash): (..., P * m, 2) from vertices (..., P+1, 2)."""
    step = style.dash + style.gap
    m = int(np.ceil(style.dash / spacing)) + 1
    t = np.linspace(style.gap / 2 / step, 1 - style.gap / 2 / step, m)
    a, b = verts[..., :-1, :], verts[..., 1:, :]
    pts = a[..., None, :] + (b - a)[..., None, :] * t[:, None]
    return pts.reshape(verts.shape[:-2] + (-1, 2))


def _outline(verts: np.ndarray, style: Style) -> np.ndarray:
    """Coarse points (about 1 px apart) covering the dashes and end vertices: (..., T, 2)."""
    return np.concatenate([_dash_points(verts, style, spacing=1.0), verts[..., [0, -1], :]], axis=-2)


def _disc_offsets(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    return np.stack([dx.ravel(), dy.ravel()], axis=-1)


def _splat(canvas: np.ndarray, points: np.ndarray, keep: np.ndarray, radius: float) -> None:
    """Draw anti-aliased discs of ``radius`` at ``points`` (n, T, 2) where ``keep`` (n, T), in place.

    Pixel (x, y) gets max(current, clip(radius + 0.5 - distance, 0, 1)).
    """
    res = canvas.shape[1]
    img, idx = np.nonzero(keep)
    p = points[img, idx].astype(np.float32)                   # (K, 2)
    offs = _disc_offsets(radius + 0.5).astype(np.float32)     # (W, 2)
    x = np.round(p[:, :1]) + offs[None, :, 0]                 # (K, W)
    y = np.round(p[:, 1:]) + offs[None, :, 1]
    val = radius + 0.5 - np.sqrt((x - p[:, :1]) ** 2 + (y - p[:, 1:]) ** 2)
    inside = (val > 0) & (x >= 0) & (x < res) & (y >= 0) & (y < res)
    flat = img[:, None].astype(np.int64) * (res * res) + y.astype(np.int64) * res + x.astype(np.int64)
    np.maximum.at(canvas.reshape(-1), flat[inside], np.minimum(val[inside], 1).astype(canvas.dtype))


def _hits(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether any of ``points`` (n, S, T, 2) falls on a True pixel of ``mask`` (n, res, res): (n, S)."""
    res = mask.shape[1]
    q = np.clip(np.round(points).astype(np.int64), 0, res - 1)
    n_idx = np.arange(mask.shape[0])[:, None, None]
    return mask[n_idx, q[..., 1], q[..., 0]].any(axis=-1)


def _near(points: np.ndarray, resolution: int, radius: float) -> np.ndarray:
    """Boolean (n, res, res): pixels within about ``radius`` of any of ``points`` (n, T, 2)."""
    n = points.shape[0]
    offs = _disc_offsets(radius)
    offs = offs[np.hypot(offs[:, 0], offs[:, 1]) <= radius + 0.5]
    r = int(np.ceil(radius)) + 1
    q = np.clip(np.round(points).astype(np.int64), -1, resolution) + r  # in the padded canvas
    mask = np.zeros((n, resolution + 2 * r, resolution + 2 * r), bool)
    mask[np.arange(n)[:, None, None], q[..., None, 1] + offs[:, 1], q[..., None, 0] + offs[:, 0]] = True
    return mask[:, r:r + resolution, r:r + resolution]


def _first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(any (n,), index of the first True (n,)) along the last axis of ``mask`` (n, K)."""
    return mask.any(axis=-1), mask.argmax(axis=-1)


def _main_contours(rng, n, num_paddles, style, resolution, min_sep, *, shapes=16, tries=4,
                   max_rounds=1000, chunk=512):
    """Vertices (n, 2, P+1, 2) of two long contours A, B per image, inside and ``min_sep`` apart.

    Contour A is the first of ``shapes`` random shapes that fits, at a random place. For
    contour B, ``shapes`` random shapes are tried at ``tries`` places where B[0] lies on
    the circle around A[0] through A[-1], and at ``tries`` random places; of those inside
    the image and clear of A, the one whose nearer end is closest to that circle is kept
    (with that end first). Images where nothing works are redrawn. So |B[0] - A[0]| is
    close to |A[-1] - A[0]| (exactly in 97% of 32x32 baseline images; at contour length
    14 the median difference is about 3 px): positives mark A[0] and A[-1], negatives
    A[0] and B[0], and the marker distance tells little about the label. The procedure
    does not look at the label.
    """
    margin = style.marker_radius + 1.0
    verts = np.zeros((n, 2, num_paddles + 1, 2))
    todo = np.arange(n)
    for _ in range(max_rounds):
        m = min(len(todo), chunk)
        ar, idx = np.arange(m), todo[:m]
        sa = _random_shapes(rng, (m, shapes), num_paddles, style)
        off_a, fits_a = _place(rng, sa, resolution, margin)
        fits_a, j = _first_true(fits_a)                                       # first shape that fits
        a = sa[ar, j] + off_a[ar, j]
        span_a = np.linalg.norm(a[:, -1] - a[:, 0], axis=-1)[:, None, None, None]
        sb = _random_shapes(rng, (m, shapes), num_paddles, style)
        theta = rng.uniform(0, 2 * np.pi, (m, shapes, tries))
        on_circle = a[:, None, None, 0] + span_a * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        off_random, _ = _place(rng, sb, resolution, margin, tries)
        off_b = np.concatenate([on_circle - sb[:, :, None, 0], off_random], axis=2)   # (m, S, 2R, 2)
        lo, hi = sb.min(axis=-2)[:, :, None] + off_b, sb.max(axis=-2)[:, :, None] + off_b
        fits_b = (lo >= margin).all(axis=-1) & (hi <= resolution - 1 - margin).all(axis=-1)
        outline_b = _outline(sb, style)[:, :, None] + off_b[:, :, :, None]    # (m, S, 2R, T, 2)
        near_a = _near(_outline(a, style), resolution, min_sep)
        clear = ~_hits(near_a, outline_b.reshape(m, -1, outline_b.shape[-2], 2)).reshape(fits_b.shape)
        ends_b = sb[:, :, None, [0, -1]] + off_b[:, :, :, None]               # (m, S, 2R, 2, 2)
        gap = np.abs(np.linalg.norm(ends_b - a[:, None, None, None, 0], axis=-1) - span_a)
        score = np.where(fits_b & clear, gap.min(axis=-1), np.inf).reshape(m, -1)
        k = score.argmin(axis=-1)
        ok = fits_a & np.isfinite(score[ar, k])
        s_idx, r_idx = np.divmod(k, off_b.shape[2])
        b = sb[ar, s_idx] + off_b[ar, s_idx, r_idx][:, None]
        flip = gap[ar, s_idx, r_idx, 1] < gap[ar, s_idx, r_idx, 0]            # nearer end last: reverse B
        b[flip] = b[flip, ::-1]
        verts[idx[ok], 0] = a[ok]
        verts[idx[ok], 1] = b[ok]
        todo = np.concatenate([idx[~ok], todo[m:]])
        if todo.size == 0:
            return verts
    raise RuntimeError(f"pathfinder: could not place two contours of {num_paddles} paddles "
                       f"{min_sep:.1f} px apart in a {resolution}x{resolution} image")


def generate_images(n: int, *, resolution: int = 32, contour_length: int = 14, seed: int = 0,
                    positive_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate ``n`` Pathfinder images: (uint8 (n, res, res), int32 labels (n,), extras).

    Exactly round(n * positive_fraction) labels are 1, in random order. ``extras`` holds
    ``markers`` (n, 2, 2) marker centers (x, y) and ``num_distractors`` (n,), for checks.
    Deterministic given the arguments. Vectorized numpy: thousands of 32x32 images per second.
    """
    core.check_positive_int(n, "n")
    if resolution not in STYLES:
        raise ValueError(f"resolution must be one of {sorted(STYLES)}, got {resolution!r}")
    core.check_positive_int(contour_length, "contour_length")
    style = STYLES[resolution]
    rng = np.random.default_rng([int(seed), resolution, contour_length, 0xFA7])
    # Long contours keep this far (centerline to centerline) from each other and from distractors,
    # so markers never touch a foreign contour and no stroke bridges two contours.
    min_sep = style.marker_radius + style.thickness + 1.0 + resolution // 64
    labels = np.zeros(n, np.int32)
    labels[: int(round(n * positive_fraction))] = 1
    labels = rng.permutation(labels)
    main = _main_contours(rng, n, contour_length, style, resolution, min_sep)

    dist_len = max(contour_length // 3, 1)
    num_dist = style.distractor_budget // dist_len
    cand = _random_shapes(rng, (n, 3 * num_dist), dist_len, style)
    off, fits = _place(rng, cand, resolution, 1.0)
    cand = cand + off
    near_main = _near(_outline(main, style).reshape(n, -1, 2), resolution, min_sep)
    valid = fits & ~_hits(near_main, _outline(cand, style))
    cand_pts = _dash_points(cand, style)
    main_pts = _dash_points(main, style).reshape(n, -1, 2)
    keep = valid & (np.cumsum(valid, axis=1) <= num_dist)

    # Positives: both ends of A. Negatives: A's first end and B's first end, which
    # _main_contours put about as far apart as A's two ends, so marker distance is no cue.
    markers = np.stack([main[:, 0, 0], np.where(labels[:, None] == 1, main[:, 0, -1], main[:, 1, 0])], axis=1)

    canvas = np.zeros((n, resolution, resolution), np.float32)
    radius = style.thickness / 2
    _splat(canvas, main_pts, np.ones(main_pts.shape[:2], bool), radius)
    dist_pts = cand_pts.reshape(n, -1, 2)
    dist_keep = np.repeat(keep, cand_pts.shape[2], axis=1)
    _splat(canvas, dist_pts, dist_keep, radius)
    _splat(canvas, markers, np.ones((n, 2), bool), style.marker_radius)
    images = np.round(canvas * 255).astype(np.uint8)
    return images, labels, {"markers": markers, "num_distractors": keep.sum(axis=1)}


# ----------------------------------------------------------------------------- files

def write_folder(root, images: np.ndarray, labels: np.ndarray, *, difficulty: str,
                 contour_length: int, per_folder: int = 1000, first_folder: int = 0) -> Path:
    """Write images (n, H, W) uint8 and labels in the official layout under ``root/difficulty``.

    ``imgs/<i>/sample_<j>.png`` with ``per_folder`` images per folder i (numbered from
    ``first_folder``), and one text file ``metadata/<i>.npy`` per folder with lines
    ``imgs/<i> sample_<j>.png <j> <label> <contour_length>``. Returns ``root/difficulty``.
    """
    base = Path(root) / difficulty
    (base / "metadata").mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(images), per_folder), start=first_folder):
        folder = base / "imgs" / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for j in range(min(per_folder, len(images) - start)):
            Image.fromarray(images[start + j]).save(folder / f"sample_{j}.png")
            lines.append(f"imgs/{i} sample_{j}.png {j} {int(labels[start + j])} {contour_length}\n")
        tmp = base / "metadata" / f"{i}.npy.tmp"
        tmp.write_text("".join(lines))
        tmp.replace(base / "metadata" / f"{i}.npy")
    return base


def _write_chunk(root, start: int, size: int, resolution: int, difficulty: str, seed: int) -> None:
    """Generate and write the images start .. start+size-1 of a generated set (one chunk)."""
    contour_length = DIFFICULTIES[difficulty]
    images, labels, _ = generate_images(size, resolution=resolution, contour_length=contour_length, seed=seed)
    write_folder(root, images, labels, difficulty=difficulty, contour_length=contour_length,
                 first_folder=start // 1000)


def generate_folder(root, n: int, *, resolution: int = 32, difficulty: str = "curv_contour_length_14",
                    seed: int = 0, chunk: int = 2000, workers: int | None = None) -> Path:
    """Generate ``n`` images and write them in the official layout under ``root/difficulty``.

    Works in chunks of ``chunk`` images (a multiple of the 1000 images per folder), each
    generated with its own seed derived from ``seed`` (the result does not depend on
    ``workers``), so memory stays bounded (Path-X). Labels are balanced within each
    chunk. Chunks run in ``workers`` processes (default: the CPU count, at most 16;
    spawned, not forked, so it is safe in a process that has started JAX). Returns
    ``root/difficulty``.
    """
    core.check_positive_int(n, "n")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    if chunk % 1000 or chunk < 1000:
        raise ValueError(f"chunk must be a positive multiple of 1000 (images per folder), got {chunk}")
    jobs = [(root, start, min(chunk, n - start), resolution, difficulty, seed * 100003 + c)
            for c, start in enumerate(range(0, n, chunk))]
    workers = min(len(jobs), workers or min(os.cpu_count() or 1, 16))
    if workers <= 1:
        for job in jobs:
            _write_chunk(*job)
    else:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for future in [pool.submit(_write_chunk, *job) for job in jobs]:
                future.result()
    return Path(root) / difficulty


def _metadata_rows(path: Path) -> list[list[str]]:
    """Rows of one metadata file: text lines split on spaces (LRA), or a real .npy string array."""
    raw = path.read_bytes()
    if raw.startswith(b"\x93NUMPY"):  # some re-releases store an (n, k) array of strings
        return [[str(v) for v in row] for row in np.load(path, allow_pickle=False).tolist()]
    return [line.split() for line in raw.decode().splitlines()]


def read_folder(base, resolution: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Read ``<root>/<difficulty>`` (metadata/*.npy + PNGs): (uint8 (n, res, res), int32 (n,), skipped)."""
    base = Path(base)
    meta_files = sorted((base / "metadata").glob("*.npy"),
                        key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.name))
    images, labels, skipped = [], [], 0
    for mf in meta_files:
        for lineno, fields in enumerate(_metadata_rows(mf), start=1):
            if not fields:
                continue
            if len(fields) < 4:
                raise ValueError(f"{mf}:{lineno}: expected 'imgs/<i> sample_<j>.png <j> <label> ...', "
                                 f"got {' '.join(fields)!r}")
            path = base / fields[0] / fields[1]
            try:
                with Image.open(path) as im:
                    img = np.asarray(im.convert("L"))
            except (OSError, ValueError):
                skipped += 1
                continue
            if img.shape != (resolution, resolution):
                raise ValueError(f"{path}: expected a {resolution}x{resolution} image, got {img.shape}")
            images.append(img)
            labels.append(int(fields[3]))
    arr = np.stack(images) if images else np.zeros((0, resolution, resolution), np.uint8)
    return arr, np.asarray(labels, np.int32), skipped


def find_folder(data_dir, resolution: int, difficulty: str) -> Path:
    """``<data_dir>[/pathfinder<res>|/lra_release/pathfinder<res>]/<difficulty>`` holding metadata/."""
    data_dir = Path(data_dir).expanduser()
    for c in (data_dir, data_dir / f"pathfinder{resolution}", data_dir / "lra_release" / f"pathfinder{resolution}"):
        if (c / difficulty / "metadata").is_dir() and any((c / difficulty / "metadata").glob("*.npy")):
            return c / difficulty
    raise core.missing_files_error(
        f"pathfinder{resolution}", [data_dir / difficulty / "metadata" / "<i>.npy",
                                    data_dir / difficulty / "imgs" / "<i>" / "sample_<j>.png"],
        where=f"{data_dir}/{difficulty}/{{metadata,imgs}} (also searched {data_dir}/pathfinder{resolution}/ "
              f"and {data_dir}/lra_release/pathfinder{resolution}/); or pass generate=True to generate them",
        source=OFFICIAL_SOURCE)


def _by_counts(n: int, counts: tuple[int, int, int]) -> list[slice]:
    """Consecutive slices of range(n) of the given sizes (the last one takes the rest)."""
    a, b = min(counts[0], n), min(counts[0] + counts[1], n)
    return [slice(0, a), slice(a, b), slice(b, n)]


def _generated(root: Path, *, resolution: int, difficulty: str, counts: tuple, seed: int) -> Path:
    """The ``<difficulty>`` folder of a generated set cached under ``root``, generating it once."""
    opts = dict(resolution=resolution, difficulty=difficulty, counts=counts, seed=seed)

    def build(tmp):
        generate_folder(tmp, sum(counts), resolution=resolution, difficulty=difficulty, seed=seed)

    return core.build_once(root / core.options_key(f"pathfinder{resolution}", opts), build) / difficulty


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (n, L) -> float32 (n, L, 1) in [-1, 1], as S4's Normalize(0.5, 0.5)."""
    return ((pixels.astype(np.float32) / 255.0 - 0.5) / 0.5)[..., None]


def load(*, data_dir=None, seed: int = 0, resolution: int = 32, difficulty: str = "curv_contour_length_14",
         generate: bool | None = None, cache_dir=None, num_train: int = 160000, num_val: int = 20000,
         num_test: int = 20000, as_float: bool = False) -> core.Task:
    """Pathfinder task at ``resolution`` (32, 64, 128 = Path-X) and ``difficulty``.

    Official folders under ``data_dir``, or (``generate``, default when ``data_dir`` is
    None) a generated set of num_train + num_val + num_test images written in the same
    layout under ``cache_dir`` (default ``data_dir`` or ~/.cache/ssm_jax), keyed by the options.
    """
    if resolution not in STYLES:
        raise ValueError(f"resolution must be one of {sorted(STYLES)}, got {resolution!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    if generate is None:
        generate = data_dir is None
    if generate:
        counts = tuple(core.check_positive_int(v, k) for k, v in
                       (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)))
        root = Path(cache_dir or data_dir or core.default_cache_dir()).expanduser()
        base = _generated(root, resolution=resolution, difficulty=difficulty, counts=counts, seed=seed)
    else:
        base = find_folder(data_dir, resolution, difficulty)
    images, labels, skipped = read_folder(base, resolution)
    n = len(labels)
    if not generate:  # LRA: first 80% train, next 10% val, last 10% test
        counts = (int(0.8 * n), int(0.9 * n) - int(0.8 * n), n)
    parts = _by_counts(n, counts)
    pixels = images.reshape(n, -1)
    inputs = to_float(pixels) if as_float else pixels
    splits = {name: core.Split(inputs[idx], labels[idx]) for name, idx in zip(core.SPLIT_NAMES, parts)}
    return core.make_task(f"pathfinder{resolution}", splits, num_classes=2, seq_len=resolution * resolution,
                          vocab_size=None if as_float else 256, input_dim=1 if as_float else None,
                          pad_id=None, image_shape=(resolution, resolution), difficulty=difficulty,
                          source="generated" if generate else "files", files=str(base), skipped=skipped)

