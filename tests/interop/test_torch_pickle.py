"""The torch.save reader: real checkpoints load without torch; malicious or broken files are refused."""

from __future__ import annotations

import io
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
  obj = {"t": base.t(), "s": base[1:, 2:4], "scalar": torch.tensor(3, dtype=torch.int64),
         "half": base.half()[0], "bool": base > 5}
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
