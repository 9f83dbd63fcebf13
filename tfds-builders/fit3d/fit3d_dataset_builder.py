"""TFDS-CLI entry for ``fit3d`` (``tfds build tfds-builders/fit3d``, which needs TensorFlow).

The builder lives in the installed package, ``perfectrep_jax.data.builders.fit3d``; without
TensorFlow use ``perfectrep-jax prepare fit3d``. TFDS names a ``Builder`` class after this module.
"""

from perfectrep_jax.data.builders.fit3d import Fit3D


class Builder(Fit3D):
  """``Fit3D``, named ``fit3d`` by TFDS from this module's name."""
