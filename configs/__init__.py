"""Experiment configs: Python files whose ``get_config()`` returns an ``ml_collections.ConfigDict``.

Every config starts from :func:`ssm_jax.training.default_config` and overrides fields;
any field can be overridden again on the command line (``--config.model.d_state=128``).
"""
