"""TFDS dataset builders writing ``array_record`` clips (importing this registers them).

``fit3d``, ``h36m`` and ``mpi_inf_3dhp`` read licensed data from a manual directory
(``MANUAL_DOWNLOAD_INSTRUCTIONS``); ``demo`` needs nothing. Build one with
``perfectrep_jax.data.prepare.prepare`` (``perfectrep-jax prepare``). The package is called
``builders`` so that nothing here is a top-level ``datasets`` module.
"""

from perfectrep_jax.data.builders.common import ClipBuilder, ClipConfig, clip_features
from perfectrep_jax.data.builders.demo import Demo
from perfectrep_jax.data.builders.fit3d import Fit3D, Fit3DConfig
from perfectrep_jax.data.builders.h36m import H36M, H36MConfig
from perfectrep_jax.data.builders.mpi_inf_3dhp import MpiInf3dhp

BUILDERS = {cls.name: cls for cls in (Demo, Fit3D, H36M, MpiInf3dhp)}

__all__ = [
  "BUILDERS",
  "ClipBuilder",
  "ClipConfig",
  "Demo",
  "Fit3D",
  "Fit3DConfig",
  "H36M",
  "H36MConfig",
  "MpiInf3dhp",
  "clip_features",
]
