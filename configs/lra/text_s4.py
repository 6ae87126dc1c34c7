"""LRA Text: byte-level IMDb, L 4096, 2 classes; model S4 (DPLR, HiPPO-LegS).

Source: Gu et al., ICLR 2022 (S4); state-spaces/s4 configs/experiment/lra/s4-lra-*.yaml.
Values and the differences from the reference implementation: configs/lra/common.py.
"""
from configs.lra.common import lra_config


def get_config():
    """The text / s4 config."""
    return lra_config("text", "s4")
