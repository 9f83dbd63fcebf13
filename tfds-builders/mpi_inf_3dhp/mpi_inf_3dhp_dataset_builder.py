"""TFDS-CLI entry for ``mpi_inf_3dhp`` (``tfds build tfds-builders/mpi_inf_3dhp``, which needs TensorFlow).

The builder lives in the installed package, ``perfectrep_jax.data.builders.mpi_inf_3dhp``; without
TensorFlow use ``perfectrep-jax prepare mpi_inf_3dhp``. TFDS names a ``Builder`` class after this module.
"""

from perfectrep_jax.data.builders.mpi_inf_3dhp import MpiInf3dhp


class Builder(MpiInf3dhp):
  """``MpiInf3dhp``, named ``mpi_inf_3dhp`` by TFDS from this module's name."""
