"""Quickstart: S4D on generated ListOps with short sequences, a few minutes on a laptop CPU.

    python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/quickstart

Generates ListOps (the LRA grammar: MIN, MAX, MED, SM over digits, nested) with sequences
shorter than LRA's (< 120 tokens instead of 500-2000), trains a small S4D classifier and
reports eval/test accuracy next to the majority-class baseline.
"""
from ssm_jax.training import default_config


def get_config():
    """The quickstart config."""
    c = default_config()
    c.data.task = "listops"
    c.data.options.num_train = 8000
    c.data.options.num_val = 1000
    c.data.options.num_test = 1000
    c.data.options.min_length = 20
    c.data.options.max_length = 120
    c.data.options.max_depth = 6

    c.model.layer = "s4d"
    c.model.d_model = 64
    c.model.n_layers = 2
    c.model.d_state = 32
    c.model.dropout = 0.0
    c.model.norm = "layer"
    c.model.prenorm = True
    c.model.pooling = "mean"

    c.optim.lr = 4e-3
    c.optim.ssm_lr = 1e-3
    c.optim.weight_decay = 0.01
    c.optim.warmup_steps = 50

    c.batch_size = 32
    c.eval_batch_size = 250
    c.num_epochs = 4
    c.eval_every = 250
    c.checkpoint_every = 250
    c.log_every = 50
    return c
