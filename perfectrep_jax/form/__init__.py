"""perfectrep_jax.form."""
