"""Quickstart: S4D on generated ListOps with short sequences, a few minutes on a laptop CPU.

    python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m experiments.train --config=configs/quickstart.py:tiny --workdir=/tmp/smoke

Generates ListOps (the LRA grammar: MIN, MAX, MED, SM over digits, nested) with sequences
shorter than LRA's (< 120 tokens instead of 500-2000), trains a small S4D classifier and
reports eval/test accuracy next to the majority-class baseline. ``:tiny`` shrinks
everything to a seconds-long smoke test (used by the tests; its accuracy means nothing).
"""
from ssm_jax.training import default_config


def get_config(size: str = ""):
    """The quickstart config; ``size="tiny"`` gives the seconds-long smoke-test version."""
    if size not in ("", "tiny"):
        raise ValueError(f"configs/quickstart.py: the config argument must be '' or 'tiny', got {size!r}")
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

    c.optim.lr = 0.01                # S4's ListOps optimizer settings (configs/lra/common.py)
    c.optim.ssm_lr = 0.001
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 50

    c.batch_size = 32
    c.eval_batch_size = 250
    c.num_epochs = 4
    c.eval_every = 250
    c.checkpoint_every = 250
    c.log_every = 50
    if size == "tiny":
        c.data.options.update(num_train=64, num_val=24, num_test=20, min_length=5, max_length=30, max_depth=3)
        c.model.update(d_model=8, n_layers=1, d_state=4, dropout=0.1)
        c.optim.warmup_steps = 2
        c.update(batch_size=8, eval_batch_size=16, num_epochs=-1, num_steps=12, eval_every=6,
                 checkpoint_every=6, log_every=3)
    return c
