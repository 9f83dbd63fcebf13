"""perfectrep_jax.interop."""
