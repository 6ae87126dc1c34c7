"""The default experiment config that every file in ``configs/`` starts from.

Groups: ``data`` (what :func:`ssm_jax.data.get_task` gets), ``model`` (what
:func:`ssm_jax.models.build_model` gets), ``optim`` (see :mod:`ssm_jax.training.optim`),
and the loop settings at the top level.
"""
from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    """A complete config with the default values; override fields in a config file."""
    from ssm_jax.models import default_model_config

    c = ml_collections.ConfigDict()
    c.seed = 0                       # model init, dropout and the data order
    c.import_modules = ()            # user modules / .py files imported first (custom SSM variants)

    c.data = ml_collections.ConfigDict()
    c.data.task = "listops"          # a name known to ssm_jax.data.get_task
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.data.seed = 0                  # seed of generated data sets (fixed across training seeds)
    c.data.options = ml_collections.ConfigDict()  # task options passed to get_task

    c.model = default_model_config()

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3                # AdamW peak learning rate of the non-SSM parameters
    c.optim.ssm_lr = 1e-3            # peak learning rate of the SSM parameters (A, B, C, dt)
    c.optim.weight_decay = 0.01      # of the non-SSM parameters
    c.optim.ssm_weight_decay = 0.0   # of the SSM parameters (0 as in S4/S5)
    c.optim.warmup_steps = 100       # linear warmup, then cosine decay to the last step
    c.optim.end_lr_fraction = 0.0    # final learning rate as a fraction of the peak
    c.optim.grad_clip = 0.0          # clip gradients to this global norm (0: no clipping)
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8

    c.batch_size = 32                # global batch, split over the devices
    c.eval_batch_size = 64
    c.num_epochs = 10
    c.num_steps = -1                 # > 0 overrides num_epochs
    c.max_train_time_s = 0.0         # > 0: stop (evaluated, checkpointed) after this long; rerun resumes
    c.eval_every = 500               # steps between evaluations (and at the end)
    c.checkpoint_every = 500         # steps between checkpoints (and at the end)
    c.keep_checkpoints = 2
    c.log_every = 50                 # steps between train metric rows / progress log lines
    c.progress_bar = ml_collections.FieldReference(None, field_type=bool)  # None: if a terminal
    c.tensorboard = True
    return c
