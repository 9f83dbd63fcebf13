"""Writing files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
  """Writes ``data`` to a temporary file beside ``path`` and renames it over ``path``.

  The file gets the usual permissions (0o666 less the umask), not mkstemp's 0o600.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


def save_npy_atomic(path: str | Path, arr: np.ndarray) -> Path:
  """``np.save`` through ``atomic_write_bytes``."""
  buf = io.BytesIO()
  np.save(buf, np.asarray(arr))
  return atomic_write_bytes(path, buf.getvalue())
