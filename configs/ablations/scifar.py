r"""Initialization ablation at the published scale: sequential CIFAR-10 (needs the CIFAR files).

    python -m experiments.ablate_init --config=configs/ablations/scifar.py --workdir=runs/ablate_scifar \
        --config.train.data.data_dir=/path/to/dir_with_cifar-10-batches-py

The task of the S4 paper's ablation: Gu, Goel and Ré, "Efficiently Modeling Long
Sequences with Structured State Spaces", ICLR 2022 (arXiv:2111.00396), Section 4.4
"SSM Ablations: the Importance of HiPPO", Figures 3 and 4: sequential CIFAR-10, models of
at most 100K trainable parameters, "a simple plateau learning rate scheduler and no
regularization", HiPPO against a random Gaussian dense A (variance scaled down until it
did not NaN) and a random diagonal Gaussian A, each with frozen and trained A; with
trained A every init reaches ~100% train accuracy while validation accuracy differs by
over 15 points (S4 with 0.1 dropout: 84.27% test). The paper gives no epoch count or
learning rate for that section; those below follow the authors' ablation config for
sCIFAR in the public code, state-spaces/s4 ``configs/experiment/cifar/s4-cifar-ablation.yaml``
(the small-model ablations of the S4D paper, Gu, Gupta, Goel, Ré, NeurIPS 2022): 4
layers, N = 64, batch 50, lr 0.01, 100 epochs, bidirectional, post-norm.

Ours, and how it differs: width 54 (so that every cell has at most 100K trainable
parameters with bidirectional layers: S4 83K, S4D 97K, dense 71K), no dropout and no weight
decay (Section 4.4), warmup + cosine schedule instead of the plateau one, grayscale
pixels (the ``image`` task, LRA's form; the S4 paper feeds RGB), SSM parameters at
lr 0.001 without weight decay. The grid adds ``dense_legs`` (HiPPO-LegS as a dense A),
the arm of Figure 3 that the random dense A is compared with.

Reads CIFAR-10 from the official python files (``cifar-10-batches-py/`` under
``train.data.data_dir``); without them the ``image`` task raises a clear error before any
training starts.
"""
from configs.ablations import init as cpu_default


def get_config():
    """The sCIFAR ablation config."""
    c = cpu_default.get_config()
    c.inits = ("s4_legs", "s4d_legs", "s4d_inv", "s4d_lin", "dense_legs",
               "random_dense", "random_diag_real", "random_diag_complex")

    t = c.train
    t.data.task = "image"
    t.data.data_dir = "data"             # holds cifar-10-batches-py/ (override on the command line)
    t.data.options = {"as_float": True}  # (n, 1024, 1) float pixels, normalized as in S4

    t.model.d_model = 54                 # <= 100K parameters for every init (tests check it)
    t.model.n_layers = 4
    t.model.d_state = 64
    t.model.dropout = 0.0
    t.model.prenorm = False
    t.model.pooling = "mean"
    t.model.bidirectional = True

    t.optim.lr = 0.01
    t.optim.ssm_lr = 0.001
    t.optim.weight_decay = 0.0
    t.optim.warmup_steps = 1000

    t.batch_size = 50
    t.eval_batch_size = 500
    t.num_steps = -1
    t.num_epochs = 100
    t.eval_every = 900                   # about one epoch of 45K training images
    t.checkpoint_every = 900
    t.log_every = 100
    return c
