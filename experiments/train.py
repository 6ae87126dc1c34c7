r"""Train and evaluate a sequence model from a config file.

    python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m experiments.train --config=configs/lra/listops_s4d.py --workdir=runs/listops \
        --config.model.d_state=128 --config.optim.lr=0.005

Any config field can be overridden with ``--config.<field>=<value>``. The workdir gets
``config.json``, ``metrics.jsonl``, TensorBoard events, checkpoints, ``curves.png`` and
``summary.json``; started again with the same workdir, the run resumes from its last
checkpoint. A user's SSM variant is trained by naming its module or file in
``--config.import_modules`` and its registered name in ``--config.model.layer``.
"""
if __name__ == "__main__":  # before jax starts: the jaxlib 0.10 XLA:CPU DenseSSM deadlock
    from experiments import xla_workarounds

    xla_workarounds.apply()

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from ssm_jax.training import progress, train_and_evaluate  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    """Run ``train_and_evaluate`` with the flags' config and workdir."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    progress.quiet_library_logs()
    logging.info("config:\n%s", FLAGS.config)
    summary, _ = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    print(progress.format_summary(summary))


if __name__ == "__main__":
    app.run(main)
