"""Files shipped inside the package (``perfectrep_jax/data/resources``), found the same way
from a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources


def resource_path(name: str):
  """A ``Traversable`` for ``resources/<name>``; open it with ``.open('rb')``.

  Bundled: ``h36m_cameras.json`` (Human3.6M calibration). Public data (mocap, corruption
  statistics) is not bundled: ``perfectrep_jax.data.shared`` finds it.
  """
  path = resources.files("perfectrep_jax.data").joinpath("resources", name)
  if not path.is_file():
    raise FileNotFoundError(f"bundled file {name} is missing from the installed package ({path})")
  return path
