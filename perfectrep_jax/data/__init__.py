"""perfectrep_jax.data."""
