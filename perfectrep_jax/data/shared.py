"""Where the data from public datasets lives: ``../shared`` beside the checkout, read at run time.

The project ships no copy of public data (motion capture, detector statistics, parity fixtures):
they are read from one root, resolved here and nowhere else:

1. ``$PERFECTREP_JAX_DATA``, when set (a folder laid out like ``shared/``: ``data/mocap/``,
   ``params/``, ``fixtures/parity/``);
2. ``shared/`` beside the checkout this package was imported from (``<checkout>/../shared``),
   which is where a developer's machine and CI have it;
3. ``shared/`` beside the current directory's parent (``./../shared``), for an installed package
   run from inside a checkout.

A missing root or file is a ``UserError``: one line saying where it looked and how to point it
elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from perfectrep_jax.errors import UserError

ENV_VAR = "PERFECTREP_JAX_DATA"
MOCAP_DIR = "data/mocap"
PARAMS_DIR = "params"
PARITY_DIR = "fixtures/parity"


def candidate_roots() -> list[Path]:
  """The folders tried, in order (the environment variable's only when it is set)."""
  env = os.environ.get(ENV_VAR)
  if env:
    return [Path(env).expanduser()]
  checkout = Path(__file__).resolve().parents[2]
  return list(dict.fromkeys([checkout.parent / "shared", Path.cwd().resolve().parent / "shared"]))


def data_root() -> Path:
  """The first candidate root that exists.

  Raises:
    UserError: none exists (the message names each place looked at and the variable to set).
  """
  roots = candidate_roots()
  for root in roots:
    if root.is_dir():
      return root
  where = ", ".join(str(r) for r in roots)
  how = (
    f"${ENV_VAR} points there"
    if os.environ.get(ENV_VAR)
    else f"set {ENV_VAR}=/path/to/shared (the folder holding data/mocap and params)"
  )
  raise UserError(f"data folder not found (looked in {where}); {how}")


def shared_path(relative: str) -> Path:
  """``<data root>/<relative>``, which must exist.

  Raises:
    UserError: the root or the file is missing.
  """
  path = data_root() / relative
  if not path.exists():
    raise UserError(f"{path}: missing from the data folder ({ENV_VAR} or ../shared beside the checkout)")
  return path


@functools.lru_cache(maxsize=1)
def mocap_takes() -> dict[str, dict]:
  """``data/mocap/takes.json``: take id -> its entry (``file`` names the npz holding it)."""
  path = shared_path(f"{MOCAP_DIR}/takes.json")
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not a readable takes table ({e})") from None


def load_mocap(files: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
  """Motion and metadata of the mocap takes stored in ``files`` (all files when ``None``).

  Args:
    files: npz file names under ``data/mocap`` (e.g. ``("mocap_h36m17.npz",)``).
  Returns:
    (motion, meta): take id -> (T, 17, 3) float32 world millimetres (Z up, 50 fps); take id ->
    its ``takes.json`` entry.
  Raises:
    UserError: a file is missing or does not hold the takes the table lists.
  """
  meta = mocap_takes()
  wanted = tuple(sorted({m["file"] for m in meta.values()})) if files is None else tuple(files)
  motion: dict[str, np.ndarray] = {}
  for name in wanted:
    motion.update(_load_npz(name))
  listed = {k: m for k, m in meta.items() if m["file"] in wanted}
  missing = sorted(set(listed) ^ set(motion))
  if missing:
    raise UserError(
      f"{data_root() / MOCAP_DIR}: takes.json and {', '.join(wanted)} disagree on "
      f"{len(missing)} takes (first: {missing[:3]})"
    )
  return motion, listed


@functools.lru_cache(maxsize=4)
def _load_npz(name: str) -> dict[str, np.ndarray]:
  path = shared_path(f"{MOCAP_DIR}/{name}")
  try:
    with np.load(path, allow_pickle=False) as npz:
      return {k: npz[k].astype(np.float32) for k in npz.files}
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not a readable mocap npz ({e})") from None
