"""perfectrep_jax.train."""
