"""Pickled .npz files (VideoPose3D / P-STMO) are read with an allow-list: data loads, code never runs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from perfectrep_jax import cli
from perfectrep_jax.data.builders.common import read_npz_dict
from perfectrep_jax.errors import UserError
from perfectrep_jax.interop import safe_pickle


class _Evil:
  """Unpickling it runs a shell command that creates ``marker``."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_the_datasets_structures_load_unchanged(tmp_path):
  rng = np.random.default_rng(0)
  positions = {
    "S1": {
      "Walking 1": rng.normal(size=(5, 32, 3)).astype(np.float32),
      "Eating": [rng.normal(size=(4, 17, 2)) for _ in range(2)],
    },
    "S9": {"Sitting": np.asfortranarray(rng.normal(size=(3, 17, 3)))},
  }
  metadata = {
    "layout_name": "h36m",
    "num_joints": np.int64(17),
    "fps": 50.0,
    "keypoints_symmetry": [[1, 2, 3], (4, 5, 6)],
    "flags": np.array([True, False]),
    "names": np.array(["hip", "knee"]),
    "half": np.float16(0.5),
    3: None,
  }
  np.savez(
    tmp_path / "data.npz",
    positions=positions,
    metadata=metadata,
    plain=np.arange(6, dtype=np.int16).reshape(2, 3),
  )
  got = read_npz_dict(tmp_path / "data.npz", "positions")
  np.testing.assert_array_equal(got["S1"]["Walking 1"], positions["S1"]["Walking 1"])
  assert got["S1"]["Walking 1"].dtype == np.float32
  for a, b in zip(got["S1"]["Eating"], positions["S1"]["Eating"]):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(got["S9"]["Sitting"], positions["S9"]["Sitting"])
  meta = read_npz_dict(tmp_path / "data.npz", "metadata")
  assert meta["layout_name"] == "h36m" and meta["num_joints"] == 17 and meta[3] is None
  assert meta["keypoints_symmetry"] == [[1, 2, 3], (4, 5, 6)] and meta["half"] == np.float16(0.5)
  np.testing.assert_array_equal(meta["flags"], [True, False])
  np.testing.assert_array_equal(meta["names"], ["hip", "knee"])
  np.testing.assert_array_equal(read_npz_dict(tmp_path / "data.npz", "plain"), np.arange(6).reshape(2, 3))
  # the same values as numpy's own loader gives
  with np.load(tmp_path / "data.npz", allow_pickle=True) as npz:
    assert npz["metadata"].item().keys() == meta.keys()


def test_an_object_that_would_run_code_is_refused_without_running(tmp_path):
  marker = tmp_path / "pwned"
  np.savez(
    tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Walking": [np.zeros((2, 32, 3)), _Evil(marker)]}}
  )
  with pytest.raises(
    UserError,
    match=r"data_3d_h36m.npz.*refusing to load global "
    r"'(posix|os|nt)\.system'",
  ) as e:
    read_npz_dict(tmp_path / "data_3d_h36m.npz", "positions_3d")
  assert "\n" not in str(e.value)
  assert not marker.exists()
  # numpy's own loader would have run it: the file really is hostile
  with np.load(tmp_path / "data_3d_h36m.npz", allow_pickle=True) as npz:
    npz["positions_3d"]
  assert marker.exists()


def test_prepare_refuses_a_hostile_npz_in_one_line(tmp_path, capsys):
  marker = tmp_path / "pwned"
  manual = tmp_path / "manual"
  manual.mkdir()
  np.savez(manual / "data_3d_h36m.npz", positions_3d={"S1": _Evil(marker)})
  status = cli.main(["prepare", "h36m", "--manual-dir", str(manual), "--data-dir", str(tmp_path / "tfds")])
  err = capsys.readouterr().err  # besides TFDS's progress bars, one error line
  errors = [line for line in err.splitlines() if "error" in line.lower()]
  assert status == 2 and not marker.exists()
  assert "Traceback" not in err and len(errors) == 1, err
  assert (
    errors[0].endswith(
      "only dicts, lists, tuples, strings, numbers and numpy arrays are allowed in this file"
    )
    and "data_3d_h36m.npz" in errors[0]
  ), err


def _replace_in_member(path, name, old: bytes, new: bytes):
  import zipfile

  with zipfile.ZipFile(path) as z:
    members = {n: z.read(n) for n in z.namelist()}
  assert members[name].count(old) == 1
  members[name] = members[name].replace(old, new)
  with zipfile.ZipFile(path, "w") as z:
    for n, raw in members.items():
      z.writestr(n, raw)


def test_other_hostile_contents_are_refused(tmp_path):
  # a dict key that is a tuple DAG 80 deep (hashing it visits 2**80 tuples): the key "K" of a
  # real file replaced by EMPTY_TUPLE, then 80 times DUP + TUPLE2
  np.savez(tmp_path / "key.npz", x={"K": 1})
  _replace_in_member(tmp_path / "key.npz", "x.npy", b"\x8c\x01K\x94", b")" + b"2\x86" * 80 + b"\x94")
  with pytest.raises(UserError, match="key.npz.*dictionary key"):
    read_npz_dict(tmp_path / "key.npz", "x")
  # an array of objects whose data is raw bytes (pointers): refused before numpy sees it
  np.savez(tmp_path / "ptr.npz", x={"a": np.arange(2, dtype=np.int64)})
  _replace_in_member(tmp_path / "ptr.npz", "x.npy", b"\x8c\x02i8", b"\x8c\x02O8")
  with pytest.raises(UserError, match="ptr.npz.*malformed numpy object array"):
    read_npz_dict(tmp_path / "ptr.npz", "x")
  np.savez(tmp_path / "ok.npz", x={"a": 1})
  with pytest.raises(UserError, match="has no 'y' array"):
    read_npz_dict(tmp_path / "ok.npz", "y")
  raw = (tmp_path / "ok.npz").read_bytes()
  (tmp_path / "bad.npz").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(UserError, match="cannot read .*bad.npz"):
    read_npz_dict(tmp_path / "bad.npz", "x")


def test_decompression_is_bounded(tmp_path, monkeypatch):
  np.savez_compressed(tmp_path / "zeros.npz", x=np.zeros(2**23))  # 64 MiB -> ~65 KB
  assert (tmp_path / "zeros.npz").stat().st_size < 200_000
  monkeypatch.setattr(safe_pickle, "NPZ_SLACK", 1 << 20)
  with pytest.raises(UserError, match="more than an .npz file this size can hold"):
    read_npz_dict(tmp_path / "zeros.npz", "x")
  monkeypatch.setattr(safe_pickle, "NPZ_SLACK", 128 << 20)
  assert read_npz_dict(tmp_path / "zeros.npz", "x").shape == (2**23,)
