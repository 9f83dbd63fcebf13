"""Writing files so that a failure never leaves a half-written one behind."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from perfectrep_jax.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
  """Writes ``data`` to a temporary file beside ``path`` and renames it over ``path``.

  The file gets the usual permissions (0o666 less the umask), not mkstemp's 0o600.

  Raises:
    UserError: naming ``path``, when the file system refuses (a read-only or missing folder, a
      file where a folder should be, a full disk); nothing is left behind and an existing
      ``path`` is unchanged.
  """
  path = Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  except OSError as e:
    raise UserError(f"{path}: cannot write ({os_error_text(e)})") from None
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except OSError as e:
    Path(tmp).unlink(missing_ok=True)
    raise UserError(f"{path}: cannot write ({os_error_text(e)})") from None
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


def os_error_text(e: OSError) -> str:
  """An OSError in one line, naming its files: ``/x/y: No space left on device``."""
  what = e.strerror or type(e).__name__
  names = [str(n) for n in (e.filename, e.filename2) if n is not None]
  return f"{' -> '.join(names)}: {what}" if names else what


def save_npy_atomic(path: str | Path, arr: np.ndarray) -> Path:
  """``np.save`` through ``atomic_write_bytes``."""
  buf = io.BytesIO()
  np.save(buf, np.asarray(arr))
  return atomic_write_bytes(path, buf.getvalue())


def load_json(path: str | Path, what: str = "JSON") -> Any:
  """Parses a JSON file; whatever is wrong with its text is a ``UserError`` naming the file.

  Besides invalid JSON: text that is not UTF-8, a number of more digits than Python converts
  (4300), nesting deeper than the parser recurses.
  """
  path = Path(path)
  try:
    text = path.read_text()
  except UnicodeDecodeError:
    raise UserError(f"{path}: not a text (UTF-8) {what} file") from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: not valid {what} ({e.msg} at line {e.lineno})") from None
  except ValueError as e:  # an integer of more than 4300 digits
    raise UserError(f"{path}: not valid {what} ({str(e).strip().splitlines()[0][:100]})") from None
  except RecursionError:
    raise UserError(f"{path}: not valid {what} (nested too deeply)") from None


def replace_between(path: str | Path, begin: str, end: str, inner: str) -> Path:
  """Rewrites the text between the lines ``begin`` and ``end`` of a file (a README's generated
  table) with ``inner``, atomically; everything else stays as it is.

  Raises:
    UserError: the file has no such pair of markers.
  """
  path = Path(path)
  doc = path.read_text()
  if begin not in doc or end not in doc.split(begin, 1)[1]:
    raise UserError(f"{path}: no {begin} ... {end} block to replace")
  head, rest = doc.split(begin, 1)
  _, tail = rest.split(end, 1)
  return atomic_write_bytes(path, f"{head}{begin}\n{inner.strip(chr(10))}\n{end}{tail}".encode())
