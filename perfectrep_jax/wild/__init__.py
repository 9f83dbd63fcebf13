"""perfectrep_jax.wild."""
