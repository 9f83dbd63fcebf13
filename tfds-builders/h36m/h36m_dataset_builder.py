"""TFDS-CLI entry for ``h36m`` (``tfds build tfds-builders/h36m``, which needs TensorFlow).

The builder lives in the installed package, ``perfectrep_jax.data.builders.h36m``; without
TensorFlow use ``perfectrep-jax prepare h36m``. TFDS names a ``Builder`` class after this module.
"""

from perfectrep_jax.data.builders.h36m import H36M


class Builder(H36M):
  """``H36M``, named ``h36m`` by TFDS from this module's name."""
