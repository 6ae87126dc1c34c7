"""Published Long Range Arena hyperparameters, shared by the ``configs/lra/<task>_<model>.py`` files.

Sources (read them for the details we do not model):

* S4 and S4D: the state-spaces/s4 repository's ``configs/experiment/lra/s4-lra-<task>.yaml``
  (listops, imdb, aan, cifar, pathfinder, pathx), the configs of the updated S4 results
  (Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces",
  ICLR 2022, later arXiv versions) and of S4D (Gu, Gupta, Goel, Re, "On the
  Parameterization and Initialization of Diagonal State Space Models", NeurIPS 2022),
  which trains S4D with these same configs (``model.layer.mode=diag``). The repository's
  pathx file notes that the S4D paper used lr 5e-4 and one epoch of warmup there; the
  S4D Path-X config below follows that note.
* The ICLR 2022 camera-ready numbers came from older configs (``lra/old/``, a plateau
  scheduler we do not implement); we use the cosine-with-warmup configs above.
* Mamba (Gu and Dao, 2023) has no published LRA results or configs: the Mamba configs
  reuse each task's S4D optimizer settings, depth, width, batch size and epochs, with
  Mamba's own block defaults (N=16, expand 2, conv 4, pre-norm, no extra activation) and
  the SSM parameters at the global learning rate without weight decay, as the Mamba
  reference implementation trains A_log, D and dt. They are untuned starting points.

Known differences from the PyTorch reference: our SSM group (A, B, C, dt) shares one
learning rate ``ssm_lr`` and no weight decay, while S4 trains C with the global lr and
weight decay and dt at the global lr (``lr.dt: null``); the cosine decay ends at our last
step (the yaml's ``num_training_steps`` is a little past the last epoch); S4's
``tie_dropout`` (sCIFAR) is not modelled. ``n_ssm`` follows the yaml files: one (A, B)
copy per channel (``n_ssm: ${..d_model}``, ``256`` or ``null``), except 2 for sCIFAR.
"""
import ml_collections

from ssm_jax.training import default_config

SOURCE = "state-spaces/s4 configs/experiment/lra/{}"

# Per task: data, architecture, optimizer, loop. train_size sets "one epoch" for eval/checkpoints.
# The generated tasks list the generator's sizes (LRA's 80/10/10 split of 200k Pathfinder
# images) so they can be overridden, e.g. --config.data.options.num_train=10000; they are
# ignored when data_dir holds the official files.
TASKS = {
    "listops": dict(
        yaml="s4-lra-listops.yaml", data_task="listops", train_size=96000,
        options=dict(num_train=96000, num_val=2000, num_test=2000),  # LRA's sizes (generator)
        n_layers=8, d_model=128, norm="batch", prenorm=False, dropout=0.0, pooling="mean",
        lr=0.01, ssm_lr=0.001, weight_decay=0.05, batch_size=50, num_epochs=40, warmup_steps=1000,
        dt_min=0.001, dt_max=0.1, n_ssm=None),
    "text": dict(
        yaml="s4-lra-imdb.yaml", data_task="text", options={}, train_size=25000,
        n_layers=6, d_model=256, norm="batch", prenorm=True, dropout=0.0, pooling="mean",
        lr=0.01, ssm_lr=0.001, weight_decay=0.05, batch_size=16, num_epochs=32, warmup_steps=1000,
        dt_min=0.001, dt_max=0.1, n_ssm=None),
    "retrieval": dict(
        yaml="s4-lra-aan.yaml", data_task="retrieval", options={}, train_size=147086,
        n_layers=6, d_model=256, norm="batch", prenorm=True, dropout=0.0, pooling="mean",
        lr=0.01, ssm_lr=0.001, weight_decay=0.05, batch_size=64, num_epochs=20, warmup_steps=2500,
        dt_min=0.001, dt_max=0.1, n_ssm=None),
    "image": dict(
        yaml="s4-lra-cifar.yaml", data_task="image", options={"as_float": True}, train_size=45000,
        n_layers=6, d_model=512, norm="layer", prenorm=False, dropout=0.1, pooling="mean",
        lr=0.01, ssm_lr=0.001, weight_decay=0.05, batch_size=50, num_epochs=200, warmup_steps=1000,
        dt_min=0.001, dt_max=0.1, n_ssm=2),
    "pathfinder": dict(
        yaml="s4-lra-pathfinder.yaml", data_task="pathfinder32", train_size=160000,
        options=dict(as_float=True, difficulty="curv_contour_length_14", num_train=160000, num_val=20000,
                     num_test=20000),
        n_layers=6, d_model=256, norm="batch", prenorm=True, dropout=0.0, pooling="last",
        lr=0.004, ssm_lr=0.001, weight_decay=0.03, batch_size=64, num_epochs=200, warmup_steps=2500,
        dt_min=0.001, dt_max=0.1, n_ssm=None),
    "pathx": dict(
        yaml="s4-lra-pathx.yaml", data_task="pathfinder128", train_size=160000,
        options=dict(as_float=True, difficulty="curv_contour_length_14", num_train=160000, num_val=20000,
                     num_test=20000),
        n_layers=6, d_model=256, norm="batch", prenorm=True, dropout=0.0, pooling="mean",
        lr=0.001, ssm_lr=0.0005, weight_decay=0.05, batch_size=16, num_epochs=50, warmup_steps=50000,
        dt_min=0.0001, dt_max=0.1, n_ssm=None),
}

# S4D's Path-X differs from the repository's S4 file (its comments: "The original S4D/HTTYH
# papers use lr=5e-4" and "used 1 epoch warmup").
S4D_OVERRIDES = {"pathx": dict(lr=0.0005, warmup_steps=10000)}

MODELS = ("s4", "s4d", "mamba")


def lra_config(task: str, model: str):
    """The config of one LRA task (a key of TASKS) and model ("s4", "s4d" or "mamba")."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    t = dict(TASKS[task], **(S4D_OVERRIDES.get(task, {}) if model == "s4d" else {}))
    c = default_config()
    c.data.task = t["data_task"]
    c.data.options.update(t["options"])

    m = c.model
    m.update(n_layers=t["n_layers"], d_model=t["d_model"], dropout=t["dropout"], pooling=t["pooling"])
    if model == "mamba":
        m.update(layer="mamba", d_state=16, norm="layer", prenorm=True, activation="none",
                 bidirectional=False)
        # backend "auto": the fused Pallas kernel on a GPU, associative_scan elsewhere;
        # pallas_options reach the fused kernel's layout from the command line, e.g.
        # --config.model.layer_kwargs.pallas_options.state_every=1 or .serial_groups=True
        # (None: the kernel's choice; typed, so that the flags can override them)
        m.layer_kwargs = {"d_conv": 4, "expand": 2, "dt_min": t["dt_min"], "dt_max": t["dt_max"],
                          "backend": "auto", "pallas_options": {
                              "state_every": _optional(int), "state_groups": _optional(int),
                              "serial_groups": _optional(bool)}}
    else:
        m.update(layer=model, d_state=64, norm=t["norm"], prenorm=t["prenorm"], activation="glu",
                 bidirectional=True)
        init = "legs" if model == "s4" else "inv"
        m.layer_kwargs = {"init": init, "dt_min": t["dt_min"], "dt_max": t["dt_max"],
                          "n_ssm": _optional(int, t["n_ssm"])}

    o = c.optim
    o.update(lr=t["lr"], weight_decay=t["weight_decay"], ssm_weight_decay=0.0, warmup_steps=t["warmup_steps"],
             grad_clip=0.0, end_lr_fraction=0.0)
    o.ssm_lr = t["lr"] if model == "mamba" else t["ssm_lr"]

    epoch = t["train_size"] // t["batch_size"]
    c.update(batch_size=t["batch_size"], eval_batch_size=t["batch_size"], num_epochs=t["num_epochs"],
             num_steps=-1, eval_every=epoch, checkpoint_every=min(epoch, 2000), log_every=100)
    c.source = SOURCE.format(t["yaml"]) + ("" if model != "mamba" else " (S4D settings; Mamba: untuned)")
    return c


def _optional(field_type, value=None):
    """A config field that may be None and is still overridable from the command line
    (ml_collections' flags refuse a plain None field: its type is unknown)."""
    return ml_collections.FieldReference(value, field_type=field_type)
