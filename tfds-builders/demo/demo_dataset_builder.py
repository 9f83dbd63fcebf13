"""TFDS-CLI entry for ``demo`` (``tfds build tfds-builders/demo``, which needs TensorFlow).

The builder lives in the installed package, ``perfectrep_jax.data.builders.demo``; without
TensorFlow use ``perfectrep-jax prepare demo``. TFDS names a ``Builder`` class after this module.
"""

from perfectrep_jax.data.builders.demo import Demo


class Builder(Demo):
  """``Demo``, named ``demo`` by TFDS from this module's name."""
