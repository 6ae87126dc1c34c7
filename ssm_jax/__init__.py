"""ssm-jax: state space sequence models (S4, S4D, Mamba) in JAX/Flax."""
__version__ = "0.1.0"
