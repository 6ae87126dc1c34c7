"""LRA Retrieval: byte-level AAN document pairs, 2 x 4000, dual encoder; model S4D (diagonal, S4D-Inv init).

Source: Gu et al., NeurIPS 2022 (S4D), trained with the S4 repository's s4-lra-*.yaml
configs; the paper also reports S4D-LegS and S4D-Lin (--config.model.layer_kwargs.init=legs).
Values and the differences from the reference implementation: configs/lra/common.py.
"""
from configs.lra.common import lra_config


def get_config():
    """The retrieval / s4d config."""
    return lra_config("retrieval", "s4d")
