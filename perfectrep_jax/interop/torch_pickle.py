"""A safe reader of ``torch.save`` files that needs no PyTorch and runs no pickled code.

``torch.save`` writes a zip archive: ``<name>/data.pkl`` is a pickle whose tensors refer to raw
little-endian storages ``<name>/data/<key>`` through persistent ids. This module unpickles it
with an allow-list of the few globals such files use (tensor rebuilders, storage types,
``OrderedDict``, numpy scalars) and rebuilds every tensor as a ``numpy.ndarray``. Any other
global, the classic route to code execution, is refused before anything is called.

A hostile file can do no more than fail in one line: every tensor view must lie inside its
storage (for every sign of stride), storages are checked against the archive's declared sizes
and inflated only as far as the tensors reach, and everything read or copied is charged to a
budget of ``BUDGET_RATIO`` times the file's size (``safe_pickle`` has the unpickler's own checks).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from perfectrep_jax.errors import UserError
from perfectrep_jax.interop.safe_pickle import (
  Budget,
  SafeUnpickler,
  error_text,
  numpy_globals,
  ordered_dict,
  short,
  short_text,
)

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


# A checkpoint may read and materialise at most this many times its size on disk, plus the slack:
# honest files (stored, uncompressed) need about twice their size (storages, then the tensors
# copied out of them); stride-0 views, decompression bombs and repeated views of one storage
# would need far more.
BUDGET_RATIO = 4
BUDGET_SLACK = 64 << 20


class _StorageType:
  """Stands in for ``torch.<X>Storage``: only its element dtype matters. Made fresh for every
  load and immutable (``__slots__``, no state can be set on it by the pickle)."""

  __slots__ = ("name", "dtype")

  def __init__(self, name: str):
    self.name = name
    self.dtype = _STORAGE_DTYPES[name]


class _Storage:
  """One storage of the archive, read lazily: only the prefix the tensors viewing it need."""

  def __init__(self, loader: "_RestrictedUnpickler", key: str, dtype: np.dtype, numel: int):
    self.loader, self.key, self.dtype, self.numel = loader, key, dtype, numel
    self.data = np.empty((0,), dtype)

  def prefix(self, count: int) -> np.ndarray:
    """At least the first ``count`` elements (``count <= numel``, checked by the caller).

    A longer prefix is read at least twice as long as the last one (within the budget), so that
    many views into one storage, in order, read it a few times rather than once per view.
    """
    if count > self.data.size:
      grown = min(self.numel, max(count, 2 * self.data.size))
      if (grown - self.data.size) * self.dtype.itemsize > self.loader.budget.left:
        grown = count
      count = grown
      nbytes = count * self.dtype.itemsize
      self.loader.budget.charge(nbytes - self.data.nbytes, f"storage {self.key}")
      with self.loader.archive.open(self.loader.member(self.key)) as f:
        raw = f.read(nbytes)
      if len(raw) < nbytes:
        raise pickle.UnpicklingError(
          f"storage {self.key} holds {len(raw) // self.dtype.itemsize} elements, {self.numel} "
          "expected (truncated file?)"
        )
      self.data = np.frombuffer(raw, dtype=self.dtype)
    return self.data


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or len(value) > 64 or not all(isinstance(v, int) for v in value):
    raise pickle.UnpicklingError(f"malformed tensor {what}")
  return tuple(int(v) for v in value)


def _rebuild_tensor(loader: "_RestrictedUnpickler"):
  """``_rebuild_tensor[_v2]``: a strided view of a storage, copied out as an array.

  The whole view must lie inside the storage for every sign of stride (lowest and highest element
  both checked), and the copy is charged to the load's budget before it is made.
  """

  def rebuild(storage, storage_offset, size, stride, *_unused) -> np.ndarray:
    if not isinstance(storage, _Storage) or storage.loader is not loader:
      raise pickle.UnpicklingError("tensor without a storage of this archive")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if not isinstance(storage_offset, int) or len(size) != len(stride) or min(size, default=0) < 0:
      raise pickle.UnpicklingError("malformed tensor (offset, size or stride)")
    offset = int(storage_offset)
    if not 0 <= offset <= storage.numel:
      raise pickle.UnpicklingError(
        f"tensor offset {short(offset)} outside its storage of {storage.numel} elements"
      )
    count = 1
    for n in size:
      count *= n
    if count == 0:
      return np.empty(size, storage.dtype)
    low = offset + sum((n - 1) * s for n, s in zip(size, stride) if s < 0)
    high = offset + sum((n - 1) * s for n, s in zip(size, stride) if s > 0)
    if low < 0 or high >= storage.numel:
      raise pickle.UnpicklingError(
        f"tensor of size {short(size)} and stride {short(stride)} at offset {offset} reaches "
        f"elements {short(low)}..{short(high)} of a storage of {storage.numel}"
      )
    loader.budget.charge(count * storage.dtype.itemsize, f"a tensor of size {short(size)}")
    data = storage.prefix(high + 1)
    view = np.lib.stride_tricks.as_strided(
      data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride), writeable=False
    )
    return np.array(view)

  return rebuild


def _rebuild_parameter(_loader):
  def rebuild(data: np.ndarray, requires_grad=None, backward_hooks=None, *_unused):
    return data

  return rebuild


class _RestrictedUnpickler(SafeUnpickler):
  """Unpickler that resolves only allow-listed globals and reads storages from the archive."""

  GLOBALS = {
    ("collections", "OrderedDict"): ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **numpy_globals(arrays=False),
    **{("torch", name): (lambda _u, name=name: _StorageType(name)) for name in _STORAGE_DTYPES},
  }

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, budget: Budget):
    super().__init__(file, budget, "only tensors, storages and plain containers are allowed in a checkpoint")
    self.archive = archive
    self._prefix = prefix
    self._storages: dict[str, _Storage] = {}

  def member(self, key: str) -> zipfile.ZipInfo:
    try:
      return self.archive.getinfo(f"{self._prefix}data/{key}")
    except KeyError:
      raise pickle.UnpicklingError(f"storage {short_text(key, 40)} is missing from the archive") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {short(pid)}")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage type {short(storage_type)}")
    if not isinstance(key, (str, int)) or not isinstance(numel, int) or numel < 0:
      raise pickle.UnpicklingError("malformed storage reference")
    key = str(key)
    if key not in self._storages:
      declared = self.member(key).file_size  # the archive's own record, checked before reading
      count = declared // storage_type.dtype.itemsize
      if count < numel:
        raise pickle.UnpicklingError(
          f"storage {short_text(key, 40)} holds {count} elements, {short(numel)} expected (truncated file?)"
        )
      self._storages[key] = _Storage(self, key, storage_type.dtype, numel)
    storage = self._storages[key]
    if storage.dtype != storage_type.dtype or storage.numel != numel:
      raise pickle.UnpicklingError(f"storage {short_text(key, 40)} referenced with two types")
    return storage


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
      raise UserError(
        f"{path}: a legacy (pre-1.6, non-zip) torch.save file; re-save it with "
        "torch.save(..., _use_new_zipfile_serialization=True)"
      ) from None
    raise UserError(f"{path}: not a PyTorch checkpoint (not a zip archive; truncated or corrupt?)") from None
  with archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise UserError(f"{path}: not a torch.save archive (found {len(pickles)} data.pkl entries)")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = prefix + "byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
      raise UserError(f"{path}: big-endian checkpoints are not supported")
    budget = Budget(BUDGET_RATIO * path.stat().st_size + BUDGET_SLACK, "a checkpoint this size")
    try:
      with archive.open(pickles[0]) as f:
        return _RestrictedUnpickler(f, archive, prefix, budget).load()
    except Exception as e:  # anything the bytes can make the unpickler raise: a corrupt file
      raise UserError(f"{path}: cannot read checkpoint: {error_text(e)}") from None
