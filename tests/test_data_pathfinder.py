"""Pathfinder generator and folder layout: labels, markers, connectivity, determinism, loader."""
import numpy as np
import pytest
from scipy import ndimage

from ssm_jax import data
from ssm_jax.data.lra import pathfinder as pf


def _markers_connected(image, markers, *, threshold, dilate):
    """Whether the two marker centers lie in one 8-connected component of the strokes."""
    mask = image > threshold
    if dilate:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    (x0, y0), (x1, y1) = np.round(markers).astype(int)
    return comp[y0, x0] != 0 and comp[y0, x0] == comp[y1, x1]


@pytest.fixture(scope="module")
def small32():
    return pf.generate_images(120, resolution=32, contour_length=14, seed=5)


def test_labels_balanced_and_markers_drawn(small32):
    images, labels, extras = small32
    assert images.shape == (120, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and labels.sum() == 60
    m = np.round(extras["markers"]).astype(int)
    ar = np.arange(120)
    assert (images[ar, m[:, 0, 1], m[:, 0, 0]] == 255).all()
    assert (images[ar, m[:, 1, 1], m[:, 1, 0]] == 255).all()
    assert (np.linalg.norm(extras["markers"][:, 0] - extras["markers"][:, 1], axis=-1) > 2).all()


def test_positives_connected_negatives_mostly_not(small32):
    # At 32x32 the dash gaps (0.75 px) close under anti-aliasing; no dilation needed.
    images, labels, extras = small32
    conn = np.array([_markers_connected(im, mk, threshold=64, dilate=0)
                     for im, mk in zip(images, extras["markers"])])
    assert conn[labels == 1].all()
    assert conn[labels == 0].mean() <= 0.1


def test_positives_connected_path_x():
    # At 128x128 the dashes are visibly separate: bridge the gaps with one dilation.
    images, labels, extras = pf.generate_images(16, resolution=128, contour_length=14, seed=0)
    assert images.shape == (16, 128, 128) and labels.sum() == 8
    conn = np.array([_markers_connected(im, mk, threshold=0, dilate=1)
                     for im, mk in zip(images, extras["markers"])])
    raw = np.array([_markers_connected(im, mk, threshold=0, dilate=0)
                    for im, mk in zip(images, extras["markers"])])
    assert conn[labels == 1].all() and not conn[labels == 0].any()
    assert not raw[labels == 1].all()  # the contours really are dashed


def test_difficulty_changes_contour_length_and_distractors():
    easy = pf.generate_images(40, resolution=32, contour_length=6, seed=0)
    hard = pf.generate_images(40, resolution=32, contour_length=14, seed=0)
    assert easy[2]["num_distractors"].mean() > hard[2]["num_distractors"].mean()
    assert (easy[0] > 64).sum() != (hard[0] > 64).sum()


def test_generation_deterministic_by_seed():
    a = pf.generate_images(10, resolution=32, contour_length=9, seed=1)
    b = pf.generate_images(10, resolution=32, contour_length=9, seed=1)
    c = pf.generate_images(10, resolution=32, contour_length=9, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_folder_layout_round_trip_and_metadata_format(tmp_path, small32):
    images, labels, _ = small32
    base = pf.write_folder(tmp_path, images[:25], labels[:25], difficulty="curv_baseline",
                           contour_length=6, per_folder=10)
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    first = (base / "metadata" / "1.npy").read_text().splitlines()[0].split()
    assert first[:2] == ["imgs/1", "sample_0.png"] and int(first[3]) == labels[10]
    assert (base / "imgs" / "2" / "sample_4.png").is_file()
    got_images, got_labels, skipped = pf.read_folder(base, 32)
    np.testing.assert_array_equal(got_images, images[:25])
    np.testing.assert_array_equal(got_labels, labels[:25])
    assert skipped == 0
    (base / "imgs" / "0" / "sample_3.png").write_bytes(b"")  # an empty image, as in the release
    assert pf.read_folder(base, 32)[2] == 1


def test_get_task_official_layout_split_and_float(tmp_path, small32):
    images, labels, _ = small32
    root = tmp_path / "lra_release" / "pathfinder32"
    pf.write_folder(root, images[:50], labels[:50], difficulty="curv_contour_length_14", contour_length=14)
    task = data.get_task("pathfinder32", data_dir=tmp_path)
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    np.testing.assert_array_equal(task.train.inputs, images[:40].reshape(40, 1024))
    np.testing.assert_array_equal(task.test.labels, labels[45:50])
    assert task.info["seq_len"] == 1024 and task.info["vocab_size"] == 256 and task.info["num_classes"] == 2
    flt = data.get_task("pathfinder32", data_dir=tmp_path, as_float=True)
    assert flt.train.inputs.shape == (40, 1024, 1) and flt.train.inputs.dtype == np.float32
    assert flt.info["input_dim"] == 1 and flt.info["vocab_size"] is None
    np.testing.assert_allclose(flt.train.inputs[..., 0], images[:40].reshape(40, -1) / 127.5 - 1, atol=1e-6)
    with pytest.raises(FileNotFoundError, match=r"curv_baseline[\s\S]*lra_release\.gz"):
        data.get_task("pathfinder32", data_dir=tmp_path, difficulty="curv_baseline")


def test_get_task_generated_is_cached(tmp_path):
    kw = dict(num_train=20, num_val=4, num_test=4, cache_dir=tmp_path, difficulty="curv_baseline")
    task = data.get_task("pathfinder64", **kw)
    assert task.train.inputs.shape == (20, 4096) and task.info["source"] == "generated"
    again = data.get_task("pathfinder64", **kw)
    np.testing.assert_array_equal(task.val.inputs, again.val.inputs)
    assert len(list(tmp_path.glob("pathfinder64-*/curv_baseline/imgs/0/*.png"))) == 28
    with pytest.raises(ValueError, match="difficulty must be one of"):
        data.get_task("pathfinder64", difficulty="hard")


def test_generate_folder_chunks_same_with_worker_processes(tmp_path):
    base = pf.generate_folder(tmp_path / "a", 1200, difficulty="curv_baseline", seed=4, chunk=1000, workers=1)
    images, labels, _ = pf.read_folder(base, 32)
    assert images.shape == (1200, 32, 32) and labels.sum() == 600
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy"]
    par = pf.generate_folder(tmp_path / "b", 1200, difficulty="curv_baseline", seed=4, chunk=1000, workers=2)
    par_images, par_labels, _ = pf.read_folder(par, 32)
    np.testing.assert_array_equal(par_images, images)
    np.testing.assert_array_equal(par_labels, labels)
    with pytest.raises(ValueError, match="chunk must be a positive multiple of 1000"):
        pf.generate_folder(tmp_path, 10, chunk=500)


def test_metadata_as_real_npy_array_is_read(tmp_path, small32):
    images, labels, _ = small32
    base = pf.write_folder(tmp_path, images[:3], labels[:3], difficulty="curv_baseline", contour_length=6)
    rows = [line.split() for line in (base / "metadata" / "0.npy").read_text().splitlines()]
    np.save(base / "metadata" / "0.npy", np.array(rows))  # np.save keeps the given .npy name
    got_images, got_labels, _ = pf.read_folder(base, 32)
    np.testing.assert_array_equal(got_labels, labels[:3])
    np.testing.assert_array_equal(got_images, images[:3])


def test_marker_distance_is_no_shortcut():
    # Without control, positives' markers (two ends of one contour) sit closer than
    # negatives' (ends of two contours): a distance threshold alone scored ~79% here.
    _, labels, extras = pf.generate_images(400, resolution=32, contour_length=6, seed=11)
    d = np.linalg.norm(extras["markers"][:, 0] - extras["markers"][:, 1], axis=-1)
    best = max(max(((d > t) == labels).mean(), ((d <= t) == labels).mean()) for t in np.unique(d))
    assert best < 0.62
    assert abs(np.median(d[labels == 1]) - np.median(d[labels == 0])) < 0.5
