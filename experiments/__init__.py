"""absl entry points: ``python -m experiments.train --config=configs/<file>.py --workdir=DIR``."""
