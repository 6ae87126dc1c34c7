"""Fused Pallas kernels for the hot loops of state space models.

A leaf package: it depends on JAX only (no Flax, nothing from ``ssm_jax``). Each kernel
sits beside the plain-JAX reference it is tested against.
"""
