"""The torch.save reader: real checkpoints load without torch; malicious or broken files are refused."""

from __future__ import annotations

import functools
import os
import pickle
import zipfile

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.interop.torch_pickle import load_torch_checkpoint


def _torch_like_zip(path, payload: bytes, storages: dict[str, bytes] | None = None):
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", payload)
    z.writestr("archive/byteorder", "little")
    for key, raw in (storages or {}).items():
      z.writestr(f"archive/data/{key}", raw)


def test_reads_upstream_checkpoint_without_torch(parity_dir):
  ckpt = load_torch_checkpoint(parity_dir / "pose_best_epoch.bin")
  assert set(ckpt) >= {"epoch", "lr", "optimizer", "model", "min_loss"}
  w = ckpt["model"]["module.joints_embed.weight"]
  assert isinstance(w, np.ndarray) and w.dtype == np.float32 and w.shape == (64, 3)
  assert ckpt["optimizer"]["state"][0]["exp_avg"].shape == (1, 27, 1, 64)


def test_matches_torch_load(parity_dir):
  torch = pytest.importorskip("torch")
  ours = load_torch_checkpoint(parity_dir / "action_best_epoch.bin")["model"]
  theirs = torch.load(parity_dir / "action_best_epoch.bin", weights_only=True)["model"]
  assert list(ours) == list(theirs)
  for k, v in theirs.items():
    np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)


def test_non_contiguous_and_offset_tensors(tmp_path):
  torch = pytest.importorskip("torch")
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  obj = {
    "t": base.t(),
    "s": base[1:, 2:4],
    "scalar": torch.tensor(3, dtype=torch.int64),
    "half": base.half()[0],
    "bool": base > 5,
  }
  torch.save(obj, tmp_path / "x.pt")
  got = load_torch_checkpoint(tmp_path / "x.pt")
  for k, v in obj.items():
    np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
  marker = tmp_path / "pwned"
  _torch_like_zip(tmp_path / "evil.bin", pickle.dumps({"model": _Evil(marker)}, protocol=2))
  with pytest.raises(UserError, match=r"refusing to load global '(posix|os|nt)\.system'"):
    load_torch_checkpoint(tmp_path / "evil.bin")
  assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
  class Eval:
    def __reduce__(self):
      return (eval, ("1+1",))

  _torch_like_zip(tmp_path / "e.bin", pickle.dumps(Eval(), protocol=2))
  with pytest.raises(UserError, match="builtins.eval"):
    load_torch_checkpoint(tmp_path / "e.bin")


def test_truncated_file(parity_dir, tmp_path):
  raw = (parity_dir / "pose_best_epoch.bin").read_bytes()
  (tmp_path / "t.bin").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(UserError, match="t.bin"):
    load_torch_checkpoint(tmp_path / "t.bin")


def test_storage_shorter_than_declared(tmp_path):
  torch = pytest.importorskip("torch")
  torch.save({"w": torch.ones(10)}, tmp_path / "ok.pt")
  with zipfile.ZipFile(tmp_path / "ok.pt") as z:
    entries = {n: z.read(n) for n in z.namelist()}
  with zipfile.ZipFile(tmp_path / "short.pt", "w") as z:
    for n, raw in entries.items():
      z.writestr(n, raw[:8] if "/data/" in n and not n.endswith(".pkl") else raw)
  with pytest.raises(UserError, match="short.pt.*(truncated|holds)"):
    load_torch_checkpoint(tmp_path / "short.pt")


def test_missing_file_and_non_checkpoints(tmp_path):
  with pytest.raises(UserError, match="no such file"):
    load_torch_checkpoint(tmp_path / "nope.bin")
  (tmp_path / "text.bin").write_text("hello")
  with pytest.raises(UserError, match="not a PyTorch checkpoint"):
    load_torch_checkpoint(tmp_path / "text.bin")
  (tmp_path / "legacy.bin").write_bytes(pickle.dumps({"a": 1}, protocol=2))
  with pytest.raises(UserError, match="legacy"):
    load_torch_checkpoint(tmp_path / "legacy.bin")
  with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
    z.writestr("readme.txt", "x")
  with pytest.raises(UserError, match="not a torch.save archive"):
    load_torch_checkpoint(tmp_path / "other.zip")


# ---------------------------------------------------------------------------- crafted archives
# Pickles are assembled from opcodes, so that the tests need no torch and can say anything a
# hostile file can say. ``_frag`` is the body of a protocol-2 pickle of plain values.
def _frag(value) -> bytes:
  return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key: str, numel: int, offset: int, size, stride, storage: str = "FloatStorage") -> bytes:
  pid = b"(" + _frag("storage") + _global("torch", storage) + _frag(key) + _frag("cpu") + _frag(numel) + b"tQ"
  return (
    _global("torch._utils", "_rebuild_tensor_v2")
    + b"("
    + pid
    + _frag(offset)
    + _frag(tuple(size))
    + _frag(tuple(stride))
    + _frag(False)
    + _global("collections", "OrderedDict")
    + b")R"
    + b"tR"
  )


def _dict_pickle(entries: dict[str, bytes]) -> bytes:
  body = b"".join(_frag(k) + v for k, v in entries.items())
  return b"\x80\x02}(" + body + b"u."


def _load_capped(*paths, mem_mb: int = 600, timeout: float = 60.0) -> list[str]:
  """Loads each path in one child under an address-space cap and a time limit: a regression
  that allocates gigabytes, hangs or crashes fails the test instead of taking the machine down.
  Returns one line per path: ``LOADED {name: (shape, dtype)}`` or ``USERERROR <message>``."""
  import subprocess
  import sys
  import textwrap

  code = textwrap.dedent(f"""
      import resource
      resource.setrlimit(resource.RLIMIT_AS, ({mem_mb} << 20, {mem_mb} << 20))
      from perfectrep_jax.errors import UserError
      from perfectrep_jax.interop.torch_pickle import load_torch_checkpoint
      for path in {[str(p) for p in paths]!r}:
        try:
          out = load_torch_checkpoint(path)
        except UserError as e:
          print("USERERROR", str(e).replace("\\n", " "), flush=True)
          continue
        print("LOADED", {{k: (v.shape, str(v.dtype)) for k, v in out.items()}}, flush=True)
  """)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
  lines = proc.stdout.splitlines()
  assert proc.returncode == 0 and len(lines) == len(paths), (
    proc.returncode,
    proc.stdout,
    proc.stderr[-2000:],
  )
  return lines


def test_views_with_negative_and_zero_strides_inside_the_storage(tmp_path):
  raw = np.arange(6, dtype="<f4").tobytes()
  payload = _dict_pickle(
    {
      "rev": _tensor("0", 6, 5, (6,), (-1,)),
      "rev2d": _tensor("0", 6, 5, (2, 3), (-3, -1)),
      "mixed": _tensor("0", 6, 2, (2, 3), (3, -1)),
      "bcast": _tensor("0", 6, 4, (3, 2), (0, 1)),
    }
  )
  _torch_like_zip(tmp_path / "ok.bin", payload, {"0": raw})
  got = load_torch_checkpoint(tmp_path / "ok.bin")
  base = np.arange(6, dtype=np.float32)
  np.testing.assert_array_equal(got["rev"], base[::-1])
  np.testing.assert_array_equal(got["rev2d"], base.reshape(2, 3)[::-1, ::-1])
  np.testing.assert_array_equal(got["mixed"], base.reshape(2, 3)[:, ::-1])
  np.testing.assert_array_equal(got["bcast"], [[4, 5]] * 3)


_OUT_OF_BOUNDS = [
  (0, (3,), (-1,)),  # before the storage: elements -2..0
  (5, (2, 3), (-1, 2)),  # one axis back, one forward: elements 4..9
  (0, (2,), (-(2**34),)),  # far before (SIGSEGV before the fix)
  (0, (2,), (2**40,)),  # far past the end
  (2, (2, 2), (-3, 2)),  # a negative stride reaching before offset 0
  (7, (1,), (1,)),  # offset past the end
  (6, (), ()),  # a scalar just past the end
]


def test_views_reaching_outside_the_storage_are_refused(tmp_path):
  paths = []
  for i, (offset, size, stride) in enumerate(_OUT_OF_BOUNDS):
    paths.append(tmp_path / f"oob{i}.bin")
    _torch_like_zip(
      paths[-1],
      _dict_pickle({"w": _tensor("0", 6, offset, size, stride)}),
      {"0": np.zeros(6, "<f4").tobytes()},
    )
  for path, line in zip(paths, _load_capped(*paths)):
    assert line.startswith(f"USERERROR {path}: cannot read checkpoint: tensor"), line
    assert "storage of 6" in line, line


def test_stride_zero_cannot_inflate_a_small_file(tmp_path):
  # 4 bytes of storage viewed as 2**29 elements (2 GiB) with stride 0
  _torch_like_zip(
    tmp_path / "s0.bin", _dict_pickle({"w": _tensor("0", 1, 0, (2**29,), (0,))}), {"0": b"\0\0\x80?"}
  )
  [out] = _load_capped(tmp_path / "s0.bin")
  assert out.startswith("USERERROR") and "more than a checkpoint this size can hold" in out, out


def test_many_views_of_one_storage_cannot_inflate_a_small_file(tmp_path):
  # one 8 MiB storage of zeros (deflated to a few KiB), viewed whole by 1000 distinct tensors:
  # 8 GB of copies from a file of 40 KB
  n = 2**21
  payload = b"\x80\x02](" + _tensor("0", n, 0, (n,), (1,)) * 1000 + b"e."
  with zipfile.ZipFile(tmp_path / "many.bin", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("archive/data.pkl", payload)
    z.writestr("archive/data/0", bytes(4 * n))
  assert (tmp_path / "many.bin").stat().st_size < 100_000
  [out] = _load_capped(tmp_path / "many.bin")
  assert out.startswith("USERERROR") and "more than a checkpoint this size can hold" in out, out


def _deflate(raw: bytes) -> bytes:
  import zlib

  comp = zlib.compressobj(9, zlib.DEFLATED, -15)
  return comp.compress(raw) + comp.flush()


@functools.lru_cache(maxsize=1)
def _deflated_zeros(nbytes: int) -> tuple[bytes, int]:
  """A raw-deflate stream of ``nbytes`` zeros and its CRC, made a MiB at a time."""
  import zlib

  comp = zlib.compressobj(9, zlib.DEFLATED, -15)
  chunk = bytes(1 << 20)
  parts, crc = [], 0
  for _ in range(nbytes >> 20):
    parts.append(comp.compress(chunk))
    crc = zlib.crc32(chunk, crc)
  parts.append(comp.flush())
  return b"".join(parts), crc


def _zip_with_bomb(path, pickle_bytes: bytes, nbytes: int) -> None:
  """A torch-like archive whose storage ``archive/data/0`` inflates to ``nbytes`` zeros, written
  by hand (zipfile cannot take pre-compressed data) without ever holding the zeros in memory."""
  import struct

  bomb, bomb_crc = _deflated_zeros(nbytes)
  members = [
    ("archive/data.pkl", _deflate(pickle_bytes), zipfile.crc32(pickle_bytes), len(pickle_bytes)),
    ("archive/data/0", bomb, bomb_crc, nbytes),
  ]
  out, central = bytearray(), bytearray()
  for name, raw, crc, usize in members:
    fn = name.encode()
    offset = len(out)
    out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(raw), usize, len(fn), 0)
    out += fn + raw
    central += (
      struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(raw),
        usize,
        len(fn),
        0,
        0,
        0,
        0,
        0,
        offset,
      )
      + fn
    )
  out += central + struct.pack(
    "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0
  )
  path.write_bytes(bytes(out))


def test_decompression_is_bounded_by_what_the_tensors_need(tmp_path):
  # a storage member that inflates to 512 MiB (under a 400 MiB cap); the one tensor needs 2
  # elements of it, which is all that is inflated
  nbytes = 512 << 20
  _zip_with_bomb(tmp_path / "bomb.bin", _dict_pickle({"w": _tensor("0", nbytes // 4, 0, (2,), (1,))}), nbytes)
  assert (tmp_path / "bomb.bin").stat().st_size < 1_000_000
  with zipfile.ZipFile(tmp_path / "bomb.bin") as z:  # a well-formed archive
    assert z.getinfo("archive/data/0").file_size == nbytes
  # a tensor claiming the whole inflated member is refused before it is inflated
  _zip_with_bomb(
    tmp_path / "bomb2.bin", _dict_pickle({"w": _tensor("0", nbytes // 4, 0, (nbytes // 4,), (1,))}), nbytes
  )
  small, whole = _load_capped(tmp_path / "bomb.bin", tmp_path / "bomb2.bin", mem_mb=400)
  assert small == "LOADED {'w': ((2,), 'float32')}", small
  assert "more than a checkpoint this size can hold" in whole, whole


def _shared_list_dag(depth: int):
  """[l, l] nested ``depth`` times: a few hundred pickled bytes, 2**depth leaves when printed."""
  node = [0]
  for _ in range(depth):
    node = [node, node]
  return node


def test_error_messages_are_bounded(tmp_path):
  dag = _frag(_shared_list_dag(60))
  cases = {
    "pid.bin": b"\x80\x02" + dag + b"Q.",  # a list as persistent id
    "stype.bin": b"\x80\x02("
    + _frag("storage")
    + dag
    + _frag("0")
    + _frag("cpu")
    + _frag(1)
    + b"tQ.",  # a list as storage type
    "size.bin": _dict_pickle(
      {"w": _tensor("0", 1, 0, (1,), (1,)).replace(_frag((1,)), dag, 1)}
    ),  # a list as tensor size
  }
  paths = []
  for name, payload in cases.items():
    paths.append(tmp_path / name)
    _torch_like_zip(paths[-1], payload, {"0": b"\0\0\0\0"})
  for line in _load_capped(*paths, timeout=30):
    assert line.startswith("USERERROR") and len(line) < 400, line[:400]


def test_deep_tuple_dag_as_a_dict_key_is_refused_quickly(tmp_path):
  key = ()
  for _ in range(80):  # hashing it visits 2**80 tuples
    key = (key, key)
  payload = b"\x80\x02}" + _frag(key) + _frag(1) + b"s."
  _torch_like_zip(tmp_path / "key.bin", payload)
  [line] = _load_capped(tmp_path / "key.bin", timeout=30)
  assert line.startswith("USERERROR") and "dictionary key" in line, line


def test_a_file_cannot_change_how_later_files_are_read(tmp_path):
  # BUILD on the FloatStorage stand-in with a float16 scalar as its "dtype" attribute
  half = (
    _global("numpy.core.multiarray", "scalar")
    + _global("numpy", "dtype")
    + _frag(("f2", False, True))
    + b"R"
    + _frag((3, "<", None, None, None, -1, -1, 0))
    + b"b"
    + b"C\x02\x00<"
    + b"\x86R"
  )
  poison = b"\x80\x02" + _global("torch", "FloatStorage") + b"}" + _frag("dtype") + half + b"sb."
  _torch_like_zip(tmp_path / "poison.bin", poison)
  raw = np.arange(4, dtype="<f4").tobytes()
  _torch_like_zip(tmp_path / "good.bin", _dict_pickle({"w": _tensor("0", 4, 0, (4,), (1,))}), {"0": raw})
  with pytest.raises(UserError, match="refusing to set the state of a _StorageType"):
    load_torch_checkpoint(tmp_path / "poison.bin")
  w = load_torch_checkpoint(tmp_path / "good.bin")["w"]
  assert w.dtype == np.float32
  np.testing.assert_array_equal(w, [0, 1, 2, 3])
  # the stand-ins are fresh per load and take no attributes
  from perfectrep_jax.interop.torch_pickle import _RestrictedUnpickler

  a = _RestrictedUnpickler.GLOBALS[("torch", "FloatStorage")](None)
  b = _RestrictedUnpickler.GLOBALS[("torch", "FloatStorage")](None)
  assert a is not b
  with pytest.raises(AttributeError):
    a.extra = 1


def test_convert_messages_stay_short_for_huge_keys(tmp_path):
  from perfectrep_jax.interop import convert

  huge = "k" * 1_000_000
  with pytest.raises(UserError) as e:
    convert.find_state_dict({huge: 1, "x": 2}, "c.bin")
  assert "no model weights found" in str(e.value) and len(str(e.value)) < 400
  with pytest.raises(UserError) as e:
    convert.find_state_dict({"model": {huge: "not a tensor"}}, "c.bin")
  assert "is not a tensor" in str(e.value) and len(str(e.value)) < 400
  state = {f"blocks_st.{i}.mlp_s.fc1.weight": np.zeros((0, 0), np.float32) for i in range(1, 100_000, 7)}
  state.update(
    {
      "joints_embed.weight": np.zeros((16, 3), np.float32),
      "temp_embed": np.zeros((1, 9, 1, 16), np.float32),
      "pos_embed": np.zeros((1, 17, 16), np.float32),
    }
  )
  with pytest.raises(ValueError) as e:
    convert.infer_model(state, 8)
  assert "not numbered 0..n-1" in str(e.value) and len(str(e.value)) < 400


def test_many_views_into_one_storage_read_it_a_few_times(tmp_path, monkeypatch):
  # 200 consecutive slices of one storage (a flat parameter buffer): each view is right, and the
  # storage is read a handful of times, not once per view
  n, k = 200, 50
  raw = np.arange(n * k, dtype="<f4").tobytes()
  views = {f"p{i}": _tensor("0", n * k, i * k, (k,), (1,)) for i in range(n)}
  _torch_like_zip(tmp_path / "flat.bin", _dict_pickle(views), {"0": raw})
  opened = []
  real_open = zipfile.ZipFile.open

  def counting_open(self, name, *args, **kwargs):
    opened.append(getattr(name, "filename", name))
    return real_open(self, name, *args, **kwargs)

  monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
  got = load_torch_checkpoint(tmp_path / "flat.bin")
  for i in range(n):
    np.testing.assert_array_equal(got[f"p{i}"], np.arange(i * k, (i + 1) * k))
  assert opened.count("archive/data/0") <= 10, opened.count("archive/data/0")
