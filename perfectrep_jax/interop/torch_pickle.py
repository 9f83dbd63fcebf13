"""A safe reader of ``torch.save`` files that needs no PyTorch and runs no pickled code.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` is a pickle whose tensors refer to raw
little-endian storages ``<name>/data/<key>`` through persistent ids. This module unpickles it
with an allow-list of the few globals such files use (tensor rebuilders, storage types,
``OrderedDict``, numpy scalars) and rebuilds every tensor as a ``numpy.ndarray``. Any other
global, the classic route to code execution, is refused before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from perfectrep_jax.errors import UserError

# torch storage class name -> numpy dtype of its elements.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
try:  # bfloat16 storages read through ml_dtypes, which JAX depends on.
  import ml_dtypes

  _STORAGE_DTYPES["BFloat16Storage"] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes ships with jax
  pass


class _StorageType:
  """Stands in for ``torch.<X>Storage``: only its element dtype matters."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, storage_offset: int, size, stride, *_unused) -> np.ndarray:
  """Views ``storage`` as a strided tensor and copies it out (``_rebuild_tensor[_v2]``)."""
  size, stride = tuple(size), tuple(stride)
  if not size:
    return np.array(storage[storage_offset])
  needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if min(size) > 0 and needed > storage.size:
    raise ValueError(f"tensor of size {size} runs past its storage of {storage.size} elements")
  view = np.lib.stride_tricks.as_strided(
      storage[storage_offset:], shape=size,
      strides=tuple(s * storage.itemsize for s in stride), writeable=False)
  return np.array(view)


def _rebuild_parameter(data: np.ndarray, requires_grad=None, backward_hooks=None, *_unused):
  return data


class _NumpyDType:
  """Stands in for ``numpy.dtype`` in a pickle: remembers the type code, ignores its state."""

  def __init__(self, code: str, *_unused):
    self.dtype = np.dtype(code)

  def __setstate__(self, state):
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
      self.dtype = self.dtype.newbyteorder(state[1]) if state[1] != "|" else self.dtype


def _numpy_scalar(dtype: _NumpyDType, data: bytes = b""):
  if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
    raise pickle.UnpicklingError("malformed numpy scalar")
  return np.frombuffer(data, dtype=dtype.dtype, count=1)[0]


def _numpy_reconstruct(*_unused):
  raise pickle.UnpicklingError("numpy arrays inside the pickle are not supported")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("numpy", "dtype"): _NumpyDType,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only allow-listed globals and reads storages from the archive."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
    super().__init__(io.BytesIO(data))
    self._archive = archive
    self._prefix = prefix
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to load global '{module}.{name}': only tensors, storages and plain "
          "containers are allowed in a checkpoint") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    key = str(key)
    if key not in self._storages:
      try:
        raw = self._archive.read(f"{self._prefix}data/{key}")
      except KeyError:
        raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
      count = len(raw) // storage_type.dtype.itemsize
      if count < numel:
        raise pickle.UnpicklingError(
            f"storage {key} holds {count} elements, {numel} expected (truncated file?)")
      self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype, count=numel)
    return self._storages[key]


def load_torch_checkpoint(path: str | Path) -> Any:
  """Reads a ``torch.save`` zip file; tensors come back as numpy arrays.

  Raises:
    UserError: naming the file, when it is missing, not a zip checkpoint, truncated, corrupt,
      or holds anything other than tensors and plain containers.
  """
  path = Path(path)
  if not path.is_file():
    raise UserError(f"{path}: no such file")
  try:
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    with open(path, "rb") as f:
      head = f.read(2)
    if head[:1] == b"\x80":
      raise UserError(f"{path}: a legacy (pre-1.6, non-zip) torch.save file; re-save it with "
                      "torch.save(..., _use_new_zipfile_serialization=True)") from None
    raise UserError(f"{path}: not a PyTorch checkpoint (not a zip archive; truncated or corrupt?)"
                    ) from None
  with archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise UserError(f"{path}: not a torch.save archive (found {len(pickles)} data.pkl entries)")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
      raise UserError(f"{path}: big-endian checkpoints are not supported")
    try:
      data = archive.read(pickles[0])
      return _RestrictedUnpickler(data, archive, prefix).load()
    except Exception as e:  # anything the bytes can make the unpickler raise: a corrupt file
      raise UserError(f"{path}: cannot read checkpoint: {e}") from None
