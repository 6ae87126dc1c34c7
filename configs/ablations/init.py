r"""Initialization ablation, CPU default: HiPPO against random A on the delayed-sum task.

    python -m experiments.ablate_init --config=configs/ablations/init.py --workdir=/tmp/ablate_init

Task: ``delayed_sum`` (``ssm_jax.data.synthetic``), generated, no download. A key symbol a
is the first token, a query symbol b the last, 126 noise tokens lie between; the label is
(a + b) mod 4 (chance 25%). The model must carry a across the whole sequence. Chosen after
probe runs (RESULTS.md, "Initialization ablation"): at 500 steps frozen S4D-Lin reached
97.6% eval accuracy and frozen random real diagonal A stayed at 25.8%.

Grid: 7 inits (S4 HiPPO-LegS DPLR, S4D-LegS, S4D-Inv, S4D-Lin; random dense Gaussian,
random real diagonal, random complex diagonal) x frozen/trained A x 3 seeds = 42 cells.
Every cell trains the same 2-layer, width-32, N=32 causal model with last-position
pooling for the same 500 steps. Measured on a shared 2-core CPU: 11 to 51 s of training
a cell (25 s mean) for all but the dense cells, 28 to 42 s for those when the CPU was quiet;
about 25 minutes for the grid on a quiet machine (estimate from those times).
"""
import ml_collections

from ssm_jax.training import default_config

PRINCIPLED = ("s4_legs", "s4d_legs", "s4d_inv", "s4d_lin")
RANDOM = ("random_dense", "random_diag_real", "random_diag_complex")


def get_config():
    """The CPU-scale ablation config."""
    c = ml_collections.ConfigDict()
    c.inits = PRINCIPLED + RANDOM        # names of experiments.ablate_init.INITS
    c.modes = ("frozen", "trained")      # frozen A (trainable_A=False) and trained A
    c.seeds = (0, 1, 2)
    c.import_modules = ()                # user modules registering variants; name them in inits

    t = default_config()
    t.data.task = "delayed_sum"
    t.data.options.seq_len = 128
    t.data.options.num_symbols = 4
    t.data.options.num_noise = 8
    t.data.options.num_train = 2000
    t.data.options.num_val = 500
    t.data.options.num_test = 500

    t.model.d_model = 32
    t.model.n_layers = 2
    t.model.d_state = 32
    t.model.dropout = 0.0
    t.model.pooling = "last"             # the query is the last token; causal layers
    t.model.bidirectional = False

    t.optim.lr = 1e-2
    t.optim.ssm_lr = 1e-3
    t.optim.weight_decay = 0.01
    t.optim.warmup_steps = 40

    t.batch_size = 64
    t.eval_batch_size = 250
    t.num_steps = 500
    t.eval_every = 100
    t.checkpoint_every = 500
    t.keep_checkpoints = 1
    t.log_every = 100
    t.progress_bar = False
    t.tensorboard = False
    c.train = t
    return c
