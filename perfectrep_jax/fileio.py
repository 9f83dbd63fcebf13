"""Writing files and directories so that a failure never leaves a half-written one behind,
reading JSON with errors that name the file, and importing a Python file by its path."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from perfectrep_jax.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
  """Writes ``data`` to a temporary file beside ``path`` and renames it over ``path``.

  The file gets ``mode``, or by default the usual permissions (0o666 less the umask), not
  mkstemp's 0o600.

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
    if mode is None:
      umask = os.umask(0)
      os.umask(umask)
      mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, path)
  except OSError as e:
    Path(tmp).unlink(missing_ok=True)
    raise UserError(f"{path}: cannot write ({os_error_text(e)})") from None
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


def new_directory(path: str | Path) -> Path:
  """``path`` made absolute, once checked to be free for a new directory: absent, or an empty one.

  Raises:
    UserError: it exists and is not an empty directory (nothing is ever overwritten).
  """
  path = Path(path).absolute()
  if path.exists() and (not path.is_dir() or any(path.iterdir())):
    raise UserError(f"{path}: already exists and is not empty; choose a new output directory")
  return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, mode: int | None = None) -> Iterator[Path]:
  """Yields a temporary sibling of ``path`` to fill; it replaces ``path`` once the block ends
  without an error, with permissions ``mode`` (default mkdtemp's 0o700), and is removed on an error,
  so that ``path`` is either complete or as it was.

  Raises:
    UserError: ``path`` exists and is not an empty directory (``new_directory``).
  """
  path = new_directory(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
  try:
    yield tmp
    if mode is not None:
      os.chmod(tmp, mode)
    if path.exists():
      path.rmdir()
    os.replace(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def json_safe(x: Any, digits: int | None = None) -> Any:
  """A JSON-ready copy of nested dicts / lists / tuples / arrays: NumPy scalars and arrays become
  Python numbers and lists, non-finite floats ``None`` (strict JSON has no NaN), and floats are
  rounded to ``digits`` decimals when given. Dict keys become strings."""
  if isinstance(x, Mapping):
    return {str(k): json_safe(v, digits) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v, digits) for v in x]
  if isinstance(x, np.ndarray):
    return json_safe(x.tolist(), digits)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    if not math.isfinite(x):
      return None
    return x if digits is None else round(x, digits)
  return x


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


def print_block(text: str, begin: str, end: str, readme: str | Path | None = None) -> None:
  """Prints a generated block (a benchmark's figures for a README) and, given ``readme``, puts it
  between the markers ``begin`` and ``end`` there (``replace_between``)."""
  print(text)
  if readme is not None:
    replace_between(readme, begin, end, text)
    print(f"wrote {readme}")


def replace_between(path: str | Path, begin: str, end: str, inner: str) -> Path:
  """Rewrites the text between the lines ``begin`` and ``end`` of a file (a README's generated
  table) with ``inner``, atomically; everything else stays as it is. ``inner`` may carry the
  markers itself (a generated block printed whole): they are not doubled.

  Raises:
    UserError: the file has no such pair of markers.
  """
  path = Path(path)
  inner = inner.replace(begin, "").replace(end, "")
  doc = path.read_text()
  if begin not in doc or end not in doc.split(begin, 1)[1]:
    raise UserError(f"{path}: no {begin} ... {end} block to replace")
  head, rest = doc.split(begin, 1)
  _, tail = rest.split(end, 1)
  return atomic_write_bytes(path, f"{head}{begin}\n{inner.strip(chr(10))}\n{end}{tail}".encode())


def import_python_file(path: str | Path, module_name: str) -> ModuleType:
  """The Python file at ``path`` imported as a module named ``module_name`` (a config, sweep or
  benchmark script that is not on ``sys.path``); whatever the file raises propagates.

  Raises:
    ValueError: ``path`` cannot be imported as Python (no ``.py`` loader for it).
  """
  spec = importlib.util.spec_from_file_location(module_name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"{path}: not a Python file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
