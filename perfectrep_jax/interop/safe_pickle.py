"""Unpickling files from strangers: allow-listed globals, bounded reads, bounded messages.

A pickle is a program: each global it names is called. ``SafeUnpickler`` runs one with

* an allow-list of globals, each made fresh for every load by a factory, so that nothing one file
  does to an object it was given can reach the next load;
* the state (``BUILD``) of only a few kinds of objects settable, each checked;
* dictionary keys and set members limited to scalars and flat tuples of scalars (hashing a deep
  tuple DAG takes exponential time);
* a byte budget, charged for everything read from the file and every array materialised, so that
  a small file cannot inflate into gigabytes;
* error messages built with ``short``, never with the ``repr`` of a structure from the file.

It is the pure-Python unpickler (``pickle._Unpickler``), the only one whose opcodes can be
checked one by one; the pickles read here (a checkpoint's ``data.pkl``, an ``.npz`` object array)
are small next to the raw arrays they refer to, or hold those arrays as plain bytes.
"""

from __future__ import annotations

import collections
import pickle
import reprlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perfectrep_jax.errors import UserError

# dtype kinds an array or scalar from a file may have: booleans, numbers, strings (not objects,
# which only an object array's list of items may hold, not structured or void types).
_PLAIN_KINDS = frozenset("biufcUS")
_MAX_KEY_TUPLE = 16

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def short(obj: Any, limit: int = 80) -> str:
  """A bounded description of ``obj`` for an error message (no unbounded ``repr``)."""
  if isinstance(obj, (int, float, str, bytes, type(None), list, tuple, dict)):
    try:
      text = _REPR.repr(obj)
    except (ValueError, RecursionError):  # an int too long to print, a structure too deep
      text = f"<{type(obj).__name__}>"
  else:
    text = f"<{type(obj).__name__}>"
  return text if len(text) <= limit else text[: limit - 3] + "..."


def short_text(text: str, limit: int = 200) -> str:
  return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(e: BaseException, limit: int = 200) -> str:
  """An exception as one bounded line, never formatting its arguments with ``repr``."""
  first = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
  first = first.strip().splitlines()[0] if first.strip() else type(e).__name__
  return short_text(first, limit)


class Budget:
  """Bytes a load may still read or allocate; ``charge`` refuses what would exceed it."""

  def __init__(self, nbytes: int, what: str):
    self.left = int(nbytes)
    self.what = what

  def charge(self, nbytes: int, for_what: str) -> None:
    if nbytes < 0 or nbytes > self.left:
      raise pickle.UnpicklingError(
        f"{for_what} needs {nbytes:,} bytes, more than {self.what} can hold "
        f"({self.left:,} bytes left of its budget)"
      )
    self.left -= nbytes


class BoundedReader:
  """A binary file whose reads are charged to a ``Budget``, checked before anything is read."""

  def __init__(self, f, budget: Budget):
    self._f = f
    self._budget = budget

  def read(self, n: int = -1) -> bytes:
    if n is None or n < 0:
      n = self._budget.left + 1
    self._budget.charge(n, "a pickled value")
    data = self._f.read(n)
    self._budget.left += n - len(data)
    return data

  def readline(self) -> bytes:
    line = self._f.readline(self._budget.left + 1)
    self._budget.charge(len(line), "a pickled line")
    return line


def plain_dtype(dtype: Any, what: str) -> np.dtype:
  """A dtype of booleans, numbers or strings; anything else (objects, records) is refused."""
  if (
    not isinstance(dtype, np.dtype)
    or dtype.kind not in _PLAIN_KINDS
    or dtype.fields is not None
    or dtype.subdtype is not None
  ):
    raise pickle.UnpicklingError(
      f"{what}: dtype {short(str(dtype))} is not allowed (only booleans, numbers and strings)"
    )
  return dtype


def _check_key(key: Any) -> None:
  """Dictionary keys and set members: scalars or flat tuples of them, cheap to hash."""
  if isinstance(key, tuple):
    if len(key) > _MAX_KEY_TUPLE or any(isinstance(k, tuple) for k in key):
      raise pickle.UnpicklingError("a dictionary key is a nested or long tuple; not allowed")
    for k in key:
      _check_key(k)
    return
  if key is None or isinstance(key, (str, bytes, int, float)):
    return
  if isinstance(key, np.generic) and key.dtype.kind in _PLAIN_KINDS:
    return
  raise pickle.UnpicklingError(f"a dictionary key of type {type(key).__name__} is not allowed")


class NumpyDType:
  """Stands in for ``numpy.dtype`` in a pickle: the type code and byte order, nothing else."""

  def __init__(self, code: Any, *_unused):
    if not isinstance(code, str) or len(code) > 16:
      raise pickle.UnpicklingError(f"malformed numpy dtype {short(code)}")
    self.dtype = np.dtype(code)

  def set_state(self, state: Any) -> None:
    """``numpy.dtype.__setstate__``'s tuple (version, byte order, subarray, names, fields, ...):
    only the byte order is taken; record and sub-array dtypes are refused."""
    if not isinstance(state, tuple) or len(state) < 2:
      raise pickle.UnpicklingError("malformed numpy dtype state")
    if len(state) >= 5 and any(s is not None for s in state[2:5]):
      raise pickle.UnpicklingError("structured numpy dtypes are not allowed")
    order = state[1]
    if order in ("<", ">", "="):
      self.dtype = self.dtype.newbyteorder(order)
    elif order != "|":
      raise pickle.UnpicklingError(f"malformed numpy byte order {short(order)}")


def _dtype_of(value: Any, what: str) -> np.dtype:
  if isinstance(value, NumpyDType):
    return value.dtype
  raise pickle.UnpicklingError(f"{what}: malformed dtype ({type(value).__name__})")


class _NDArrayType:
  """Stands in for the ``numpy.ndarray`` class, which may only be passed to ``_reconstruct``."""


def numpy_globals(*, arrays: bool) -> dict[tuple[str, str], Callable[["SafeUnpickler"], Any]]:
  """Allow-listed numpy globals: dtypes and scalars, and with ``arrays`` the ndarray rebuilder."""

  def scalar(u: SafeUnpickler):
    def make(dtype, data: bytes = b""):
      dt = plain_dtype(_dtype_of(dtype, "numpy scalar"), "numpy scalar")
      if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError("malformed numpy scalar")
      return np.frombuffer(data, dtype=dt, count=1)[0]

    return make

  def reconstruct(u: SafeUnpickler):
    if not arrays:

      def refuse(*_unused):
        raise pickle.UnpicklingError("numpy arrays inside the pickle are not supported")

      return refuse

    def make(subtype, shape=None, typecode=None):
      if not isinstance(subtype, _NDArrayType):
        raise pickle.UnpicklingError("numpy _reconstruct of something other than an ndarray")
      arr = np.empty((0,), np.int8)  # its state (shape, dtype, data) comes with BUILD
      u.unbuilt_arrays[id(arr)] = arr
      return arr

    return make

  out = {
    ("numpy", "dtype"): lambda u: NumpyDType,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy.core.multiarray", "_reconstruct"): reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): reconstruct,
  }
  if arrays:
    out[("numpy", "ndarray")] = lambda u: _NDArrayType()
  return out


class SafeUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """Unpickles with allow-listed globals (``GLOBALS``: (module, name) -> factory(unpickler)).

  Args:
    file: a binary file (wrapped in a ``BoundedReader`` charging ``budget``).
    budget: what this load may read and allocate.
    purpose: ends the message refusing a global, e.g. "only tensors ... are allowed".
  """

  GLOBALS: dict[tuple[str, str], Callable[["SafeUnpickler"], Any]] = {}

  def __init__(self, file, budget: Budget, purpose: str):
    super().__init__(BoundedReader(file, budget))
    self.budget = budget
    self.purpose = purpose
    self.unbuilt_arrays: dict[int, np.ndarray] = {}

  def find_class(self, module: str, name: str):
    factory = self.GLOBALS.get((module, name))
    if factory is None:
      raise pickle.UnpicklingError(
        f"refusing to load global '{short_text(str(module), 60)}.{short_text(str(name), 60)}': {self.purpose}"
      )
    return factory(self)

  def load(self):
    out = super().load()
    if self.unbuilt_arrays:
      raise pickle.UnpicklingError("a numpy array without its data (no BUILD)")
    return out

  # ---------------------------------------------------------------- opcodes with checks
  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def _load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, NumpyDType):
      inst.set_state(state)
    elif isinstance(inst, np.ndarray) and self.unbuilt_arrays.get(id(inst)) is inst:
      self._build_array(inst, state)
      del self.unbuilt_arrays[id(inst)]
    elif type(inst) is collections.OrderedDict:  # torch state dicts carry `_metadata`
      if not isinstance(state, dict) or not all(isinstance(k, str) and k.startswith("_") for k in state):
        raise pickle.UnpicklingError("an OrderedDict's state may only set private attributes")
      inst.__dict__.update(state)
    else:
      raise pickle.UnpicklingError(f"refusing to set the state of a {type(inst).__name__}")

  dispatch[pickle.BUILD[0]] = _load_build

  def _build_array(self, arr: np.ndarray, state: Any) -> None:
    """``ndarray.__setstate__`` after checking shape, dtype and data against each other."""
    if not isinstance(state, tuple) or len(state) != 5:
      raise pickle.UnpicklingError("malformed numpy array state")
    _version, shape, dtype, fortran, raw = state
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
      raise pickle.UnpicklingError("malformed numpy array shape")
    dtype = _dtype_of(dtype, "numpy array")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if dtype.kind == "O":
      if not isinstance(raw, list) or len(raw) != count:
        raise pickle.UnpicklingError("malformed numpy object array")
      self.budget.charge(8 * count, "an object array")
    else:
      plain_dtype(dtype, "numpy array")
      if not isinstance(raw, bytes) or len(raw) != count * dtype.itemsize:
        raise pickle.UnpicklingError(
          f"numpy array of shape {short(shape)} and dtype {dtype} does not match its "
          f"{len(raw) if isinstance(raw, bytes) else 0} bytes of data"
        )
      self.budget.charge(len(raw), "a numpy array")
    arr.__setstate__((1, shape, dtype, bool(fortran), raw))

  def _load_setitem(self):
    _check_key(self.stack[-2])
    self._check_mapping(self.stack[-3])
    pickle._Unpickler.load_setitem(self)  # pylint: disable=protected-access

  dispatch[pickle.SETITEM[0]] = _load_setitem

  def _load_setitems(self):
    items = self.stack
    for k in items[0::2]:
      _check_key(k)
    self._check_mapping(self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None)
    pickle._Unpickler.load_setitems(self)  # pylint: disable=protected-access

  dispatch[pickle.SETITEMS[0]] = _load_setitems

  def _load_dict(self):
    for k in self.stack[0::2]:
      _check_key(k)
    pickle._Unpickler.load_dict(self)  # pylint: disable=protected-access

  dispatch[pickle.DICT[0]] = _load_dict

  def _load_additems(self):
    for k in self.stack:
      _check_key(k)
    if not isinstance(self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None, set):
      raise pickle.UnpicklingError("ADDITEMS on something other than a set")
    pickle._Unpickler.load_additems(self)  # pylint: disable=protected-access

  dispatch[pickle.ADDITEMS[0]] = _load_additems

  def _load_frozenset(self):
    for k in self.stack:
      _check_key(k)
    pickle._Unpickler.load_frozenset(self)  # pylint: disable=protected-access

  dispatch[pickle.FROZENSET[0]] = _load_frozenset

  @staticmethod
  def _check_mapping(target: Any) -> None:
    if type(target) not in (dict, collections.OrderedDict):
      raise pickle.UnpicklingError(f"setting items of a {type(target).__name__}; only dicts")

  def _refuse_class_instance(self):
    raise pickle.UnpicklingError("class instances (INST/OBJ/NEWOBJ) are not allowed")

  for _op in (pickle.INST, pickle.OBJ, pickle.NEWOBJ, pickle.NEWOBJ_EX):
    dispatch[_op[0]] = _refuse_class_instance
  del _op


def ordered_dict(u: SafeUnpickler):
  """``collections.OrderedDict`` as pickles call it: with no arguments (items come after)."""

  def make(*args):
    if args:
      raise pickle.UnpicklingError("OrderedDict with constructor arguments is not allowed")
    return collections.OrderedDict()

  return make


# ---------------------------------------------------------------------------- .npz archives
# An .npz may read and materialise this many times its size on disk, plus the slack: deflated
# float arrays shrink by far less; a decompression bomb grows by a thousand.
NPZ_RATIO = 32
NPZ_SLACK = 256 << 20


class _NpyUnpickler(SafeUnpickler):
  """An object array's pickle (``np.save`` of dicts, lists, strings, numbers and arrays)."""

  GLOBALS = numpy_globals(arrays=True)


def load_npz_array(path: str | Path, key: str) -> np.ndarray:
  """Array ``key`` of an ``.npz`` archive; an object array is unpickled with the allow-list
  (dicts, lists, tuples, strings, numbers, numpy arrays of plain dtypes), never running code.

  Raises:
    UserError: naming the file, when it is missing, not an archive, lacks ``key``, is truncated,
      holds any other kind of object, or would inflate far beyond its size.
  """
  import zipfile

  path = Path(path)
  if not path.is_file():
    raise UserError(f"missing file {path}")
  budget = Budget(NPZ_RATIO * path.stat().st_size + NPZ_SLACK, "an .npz file this size")
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError, ValueError) as e:
    raise UserError(f"cannot read {path}: not an .npz archive ({error_text(e)})") from None
  with archive:
    files = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    if key not in files:
      raise UserError(f"{path} has no '{key}' array (it has {short(files, 200)})")
    try:
      with archive.open(f"{key}.npy") as f:
        return _read_npy(f, budget)
    except UserError:
      raise
    except Exception as e:  # anything the bytes can make the readers raise: a corrupt file
      raise UserError(f"cannot read {path} ('{key}'): {error_text(e)}") from None


def _read_npy(f, budget: Budget) -> np.ndarray:
  fmt = np.lib.format
  version = fmt.read_magic(f)
  header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
  shape, fortran, dtype = header(f)
  count = 1
  for n in shape:
    count *= n
  if dtype.hasobject:
    if dtype != np.dtype(object):
      raise pickle.UnpicklingError("record arrays holding objects are not allowed")
    arr = _NpyUnpickler(
      f, budget, "only dicts, lists, tuples, strings, numbers and numpy arrays are allowed in this file"
    ).load()
    if not isinstance(arr, np.ndarray) or arr.dtype != object or arr.shape != tuple(shape):
      raise pickle.UnpicklingError("the pickled object does not match the array header")
    return arr
  plain_dtype(dtype, "array")
  budget.charge(count * dtype.itemsize, f"an array of shape {short(shape)}")
  flat = np.empty(count, dtype)
  buf, got = memoryview(flat.view(np.uint8)), 0
  while got < len(buf):
    n = f.readinto(buf[got:])
    if not n:
      raise pickle.UnpicklingError(f"array data ends after {got} of {len(buf)} bytes (truncated?)")
    got += n
  return flat.reshape(shape, order="F" if fortran else "C")
