"""The initialization ablation end to end on a tiny grid, and its report pieces."""
import csv
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from configs.ablations import init as init_config
from configs.ablations import scifar as scifar_config
from experiments import ablate_init, ablation_report
from ssm_jax.layers.dense import DenseSSM
from ssm_jax.layers.diagonal import S4D
from ssm_jax.layers.s4 import S4

TINY_INITS = ("s4_legs", "random_diag_real")


def tiny_config(seeds=(0,)):
    """The default ablation config shrunk to a few seconds per cell."""
    c = init_config.get_config()
    c.inits, c.seeds = TINY_INITS, seeds
    t = c.train
    t.data.options.seq_len = 16
    t.data.options.num_train, t.data.options.num_val, t.data.options.num_test = 64, 32, 32
    t.model.d_model, t.model.n_layers, t.model.d_state = 8, 1, 8
    t.batch_size, t.eval_batch_size = 16, 32
    t.num_steps, t.eval_every, t.checkpoint_every, t.log_every = 6, 3, 6, 3
    t.optim.warmup_steps = 1
    t.optim.ssm_lr = 0.05        # large, so that a trained A visibly moves in 6 steps
    return c


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ablation"))
    config = tiny_config(seeds=(0,))
    return config, workdir, ablate_init.run(config, workdir)


def test_outputs_have_one_row_per_init_and_mode(grid_run):
    config, workdir, paths = grid_run
    for key in ("csv", "markdown", "curves", "eigenvalues", "json"):
        assert os.path.getsize(paths[key]) > 0, key
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["init"], r["A"]) for r in rows] == [(i, m) for i in TINY_INITS for m in ("frozen", "trained")]
    for r in rows:
        assert r["seeds"] == "1"
        assert 0.0 <= float(r["best_eval_mean"]) <= 1.0
        assert float(r["best_eval_mean"]) >= float(r["final_eval_mean"]) - 1e-9
    with open(paths["markdown"]) as f:
        table = f.read()
    assert table.count("| frozen |") == 2 and table.count("| trained |") == 2
    assert "Only the SSM layer" in table


def test_frozen_A_unchanged_and_trained_A_moves(grid_run):
    _, workdir, paths = grid_run
    with open(paths["json"]) as f:
        cells = json.load(f)["cells"]
    assert len(cells) == 2 * 2
    for cell in cells:
        eig = np.load(os.path.join(workdir, ablate_init.cell_name(cell["init"], cell["mode"], cell["seed"]),
                                   ablate_init.EIGEN_FILE))
        if cell["mode"] == "frozen":
            assert cell["A_change"] == 0.0
            np.testing.assert_array_equal(eig["initial"], eig["trained"])
        else:
            assert cell["A_change"] > 1e-4
            assert not np.allclose(eig["initial"], eig["trained"])


def test_rerun_skips_finished_cells(grid_run, monkeypatch):
    config, workdir, _ = grid_run

    def fail(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(ablate_init, "run_cell", fail)
    results = ablate_init.run_grid(config, workdir)
    assert len(results) == len(ablate_init.grid(config))


def test_only_layer_and_init_differ_between_cells():
    config = init_config.get_config()
    a = ablate_init.cell_config(config, "s4_legs", "frozen", 0).to_dict()
    b = ablate_init.cell_config(config, "random_dense", "trained", 0).to_dict()
    assert a["model"].pop("layer") == "s4" and b["model"].pop("layer") == "dense"
    assert a["model"].pop("layer_kwargs") == {"init": "legs", "trainable_A": False}
    assert b["model"].pop("layer_kwargs") == {"init": "random", "trainable_A": True}
    assert a == b


def test_bad_grid_names_are_rejected():
    config = init_config.get_config()
    config.inits = ("s4d_lin", "hippo_magic")
    with pytest.raises(ValueError, match="hippo_magic"):
        ablate_init.check_grid(config)


def test_eigenvalues_of_each_layer_kind():
    rngs = nnx.Rngs(0)
    # DPLR LegS: the full matrix Lambda - P P^* has the HiPPO-LegS eigenvalues -1 .. -N
    # (N = 8 keeps the non-normal eigenproblem well enough conditioned in float32).
    ev = ablation_report.layer_eigenvalues(S4(2, d_state=8, rngs=rngs))
    assert ev.shape == (2, 8)
    np.testing.assert_allclose(np.sort(ev[0].real), -np.arange(8, 0, -1), atol=0.05)
    # S4D-Lin: -1/2 + i pi n and the conjugates
    ev = ablation_report.layer_eigenvalues(S4D(2, d_state=8, init="lin", rngs=rngs))
    assert ev.shape == (2, 8)
    np.testing.assert_allclose(np.sort(ev[0].imag), np.pi * np.array([-3, -2, -1, 0, 0, 1, 2, 3]), atol=1e-5)
    np.testing.assert_allclose(ev.real, -0.5, atol=1e-6)
    # dense: eig(A) of the one shared A
    layer = DenseSSM(2, d_state=6, init="random", rngs=rngs)
    np.testing.assert_allclose(np.sort_complex(ablation_report.layer_eigenvalues(layer)),
                               np.sort_complex(np.linalg.eigvals(np.asarray(layer.A[...], np.float64))))


def test_aggregate_mean_and_std_over_seeds():
    def summary(best, final):
        return {"best_eval_accuracy": best, "test_accuracy_at_best_eval": best,
                "final": {"eval_accuracy": final, "test_accuracy": final}, "train_time_s": 1.0}

    results = [{"init": "a", "mode": "frozen", "seed": s, "summary": dict(summary(b, f), num_params=n)}
               for s, (b, f, n) in enumerate([(0.5, 0.4, 100), (0.7, 0.6, 120)])]
    [row] = ablation_report.aggregate(results, ["a", "b"])
    assert row["seeds"] == 2
    assert row["params"] == "100/120"        # cells built by different code are flagged
    assert row["best_eval_mean"] == pytest.approx(0.6) and row["best_eval_std"] == pytest.approx(0.1)
    assert row["final_eval_mean"] == pytest.approx(0.5)


def test_scifar_config_errors_clearly_without_cifar_files(tmp_path):
    config = scifar_config.get_config()
    config.train.data.data_dir = str(tmp_path / "no_cifar_here")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        ablate_init.run_grid(config, str(tmp_path / "grid"))
    assert os.listdir(tmp_path / "grid") == []          # nothing trained


def test_scifar_cells_have_at_most_100k_parameters():
    """The S4 paper's ablation constrains every model to at most 100K trainable parameters."""
    config = scifar_config.get_config()
    info = {"num_classes": 10, "vocab_size": None, "input_dim": 1, "seq_len": 1024, "dual": False,
            "task": "classification"}
    for init in config.inits:
        model = ablate_init.initial_model(ablate_init.cell_config(config, init, "trained", 0), info)
        count = sum(np.size(x) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
        assert count <= 100_000, (init, count)


def test_user_variants_from_import_modules_join_the_grid(tmp_path):
    """Issue 6: a user's registered variants (a diagonal and a selective one, from the
    examples) are ablation rows by name, imported through config.import_modules."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = tiny_config(seeds=(0,))
    config.import_modules = (os.path.join(root, "examples", "diagonal_geometric.py"),
                             os.path.join(root, "examples", "selective_new_delta.py"))
    config.inits = ("geom_diag", "bounded_delta")
    config.modes = ("frozen", "trained")
    config.train.num_steps, config.train.eval_every, config.train.checkpoint_every = 3, 3, 3
    paths = ablate_init.run(config, str(tmp_path))
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["init"], r["A"]) for r in rows] == [(i, m) for i in config.inits for m in ("frozen", "trained")]
    for init in config.inits:
        with open(os.path.join(str(tmp_path), ablate_init.cell_name(init, "frozen", 0), "result.json")) as f:
            assert json.load(f)["A_change"] == 0.0
    with pytest.raises(ValueError, match="unknown name 'not_a_variant'"):
        ablate_init.init_spec("not_a_variant")
