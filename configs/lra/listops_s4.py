"""LRA ListOps (generated or the official basic_*.tsv), L up to 2000, 10 classes; model S4 (DPLR, HiPPO-LegS).

Source: Gu et al., ICLR 2022 (S4); state-spaces/s4 configs/experiment/lra/s4-lra-*.yaml.
Values and the differences from the reference implementation: configs/lra/common.py.
"""
from configs.lra.common import lra_config


def get_config():
    """The listops / s4 config."""
    return lra_config("listops", "s4")
