"""The data folder: one resolver, read at run time, and no copy of its files in the repository."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfectrep_jax.data import corruption, demo, shared
from perfectrep_jax.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DATA_SUFFIXES = (".npz", ".npy", ".json", ".bin", ".pkl", ".pth", ".csv", ".h5", ".mp4", ".avi")


def _tracked_files() -> list[Path]:
  out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
  return [REPO / p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def _sha(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_tracked_file_is_a_copy_of_the_data_folder():
  if not (REPO / ".git").exists():
    pytest.skip("not a git checkout")
  root = shared.data_root()
  in_data = {_sha(p): p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 512}
  copies = [
    f"{t.relative_to(REPO)} = {in_data[_sha(t)]}"
    for t in _tracked_files()
    if t.stat().st_size > 512 and _sha(t) in in_data
  ]
  assert copies == []


def test_no_tracked_data_file_is_larger_than_200_kb():
  if not (REPO / ".git").exists():
    pytest.skip("not a git checkout")
  big = [
    f"{t.relative_to(REPO)} ({t.stat().st_size} B)"
    for t in _tracked_files()
    if t.suffix in DATA_SUFFIXES and t.stat().st_size > 200_000 and "weights" not in t.parts
  ]
  assert big == []


def test_environment_variable_names_the_root(tmp_path, monkeypatch):
  monkeypatch.setenv(shared.ENV_VAR, str(tmp_path))
  assert shared.candidate_roots() == [tmp_path]
  assert shared.data_root() == tmp_path
  with pytest.raises(UserError, match=r"params/d2c_params\.npz: missing from the data folder"):
    shared.shared_path("params/d2c_params.npz")


def test_missing_root_says_where_it_looked_and_what_to_set(tmp_path, monkeypatch):
  monkeypatch.setenv(shared.ENV_VAR, str(tmp_path / "nowhere"))
  with pytest.raises(UserError) as e:
    shared.data_root()
  message = str(e.value)
  assert "\n" not in message and str(tmp_path / "nowhere") in message and shared.ENV_VAR in message
  monkeypatch.delenv(shared.ENV_VAR)
  roots = shared.candidate_roots()
  assert roots[0] == REPO.parent / "shared"


def test_demo_and_noise_statistics_come_from_the_data_folder():
  root = shared.data_root()
  motion, meta = demo.load_takes()
  assert {m["file"] for m in meta.values()} == set(demo.MOCAP_FILES)
  with np.load(root / "data/mocap/mocap_h36m17.npz") as npz:
    np.testing.assert_array_equal(motion["uiprmd_m01_s09"], npz["uiprmd_m01_s09"])
  corruption.load_statistics.cache_clear()
  stats = corruption.load_statistics()
  with np.load(root / "params/synthetic_noise.npz") as npz:
    np.testing.assert_array_equal(stats.std, npz["std"].astype(np.float32))


def test_all_mocap_files_load_with_their_table():
  motion, meta = shared.load_mocap()
  assert len(motion) == len(meta) == len(shared.mocap_takes())
  assert all(m.ndim == 3 and m.shape[1:] == (17, 3) for m in motion.values())


def test_prepare_demo_without_a_data_folder_is_one_line(tmp_path):
  env = dict(os.environ, **{shared.ENV_VAR: str(tmp_path / "missing"), "PERFECTREP_JAX_NO_REEXEC": "1"})
  run = subprocess.run(
    [sys.executable, "-m", "perfectrep_jax.cli", "prepare", "demo", "--data-dir", str(tmp_path / "tfds")],
    capture_output=True,
    text=True,
    env=env,
    cwd=tmp_path,
    timeout=300,
  )
  assert run.returncode == 2, run.stderr
  errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
  assert len(errors) == 1 and "data folder not found" in errors[0] and shared.ENV_VAR in errors[0]
  assert "Traceback" not in run.stderr
  assert not (tmp_path / "tfds").exists()  # checked before TFDS made any folder
