"""perfectrep_jax.models."""
