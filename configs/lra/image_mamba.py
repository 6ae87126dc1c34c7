"""LRA Image: grayscale CIFAR-10 pixels, L 1024, 10 classes; model Mamba (selective SSM; no published LRA config).

Mamba has no published LRA numbers: this reuses the S4D settings of the task with
Mamba's block defaults (see configs/lra/common.py); treat it as an untuned baseline.
Values and the differences from the reference implementation: configs/lra/common.py.
"""
from configs.lra.common import lra_config


def get_config():
    """The image / mamba config."""
    return lra_config("image", "mamba")
