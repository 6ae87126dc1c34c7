"""Long Range Arena configs: ``<task>_<model>.py`` for six tasks and S4, S4D, Mamba (see common.py)."""
