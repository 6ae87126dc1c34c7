"""Configs of the initialization ablation (``experiments/ablate_init.py``)."""
