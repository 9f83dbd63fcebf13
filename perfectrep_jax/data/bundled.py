"""Files shipped inside the package (``perfectrep_jax/data/resources``), found the same way
from a checkout or an installed wheel."""

from __future__ import annotations

from importlib import resources


def resource_path(name: str):
    """A ``Traversable`` for ``resources/<name>``; open it with ``.open('rb')``.

    Bundled: ``mocap_h36m17.npz`` and ``takes.json`` (demo mocap, ``MOCAP_README.md``),
    ``synthetic_noise.npz`` and ``d2c_params.npz`` (corruption statistics, ``PARAMS_README.md``),
    ``h36m_cameras.json`` (Human3.6M calibration).
    """
    path = resources.files("perfectrep_jax.data").joinpath("resources", name)
    if not path.is_file():
        raise FileNotFoundError(f"bundled file {name} is missing from the installed package ({path})")
    return path
