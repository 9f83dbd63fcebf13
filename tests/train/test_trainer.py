"""The trainer end to end on the bundled demo data: train, report, checkpoint, resume, predict."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from perfectrep_jax.models import model_dir
from tests.train.conftest import CONFIGS, read_metrics, run_cli


def _params(workdir, step=None):
  model, _ = model_dir.load_model(workdir, step=step)
  return model_dir.weights_of(model)


def _assert_same_weights(a, b, atol=0.0):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("smoke") / "run"
  proc = run_cli(["train", "--config", f"{CONFIGS / 'pretrain.py'}:smoke", "--workdir", str(workdir)])
  return workdir, proc


def test_run_directory_holds_what_a_person_needs(smoke_run):
  workdir, proc = smoke_run
  assert "Protocol #1 (MPJPE)" in proc.stdout + proc.stderr
  for name in ("config.json", "model.json", "metrics.jsonl", "best.json"):
    assert (workdir / name).is_file(), name
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  config = json.loads((workdir / "config.json").read_text())
  assert config["task"] == "pretrain" and config["total_steps"] == 6
  lines = read_metrics(workdir)
  train = [m for m in lines if "split" not in m]
  evals = [m for m in lines if m.get("split") == "test"]
  assert [m["step"] for m in train] == [2, 4, 6]
  assert all(np.isfinite(m["loss"]) and m["lr"] > 0 and "loss_3d_velocity" in m for m in train)
  assert evals and evals[-1]["step"] == 6 and evals[-1]["mpjpe"] > 0
  assert any(k.startswith("mpjpe/") for k in evals[-1])
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]


def test_rerunning_a_finished_run_resumes_and_changes_nothing(smoke_run):
  workdir, _ = smoke_run
  before = _params(workdir, step=6)
  n_lines = len(read_metrics(workdir))
  proc = run_cli(["train", "--config", f"{CONFIGS / 'pretrain.py'}:smoke", "--workdir", str(workdir)])
  assert "resumed" in proc.stdout
  assert len(read_metrics(workdir)) == n_lines
  _assert_same_weights(before, _params(workdir, step=6))


def test_predict_and_eval_read_the_run_directory(smoke_run, tmp_path):
  workdir, _ = smoke_run
  x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 17, 3)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  run_cli(
    [
      "predict",
      "--checkpoint",
      str(workdir),
      "--input",
      str(tmp_path / "x.npy"),
      "--output",
      str(tmp_path / "y.npy"),
    ]
  )
  y = np.load(tmp_path / "y.npy")
  assert y.shape == (2, 9, 17, 3) and np.isfinite(y).all()
  proc = run_cli(["eval", "--config", f"{CONFIGS / 'pretrain.py'}:smoke", "--workdir", str(workdir)])
  assert "P1" in proc.stdout and "Protocol #2" in proc.stdout


def test_killed_run_resumes_to_the_same_result(smoke_run, tmp_path):
  """SIGKILL right after the step-3 checkpoint, rerun: same weights and metrics as no kill."""
  reference, _ = smoke_run
  workdir = tmp_path / "killed"
  args = ["train", "--config", f"{CONFIGS / 'pretrain.py'}:smoke", "--workdir", str(workdir)]
  proc = run_cli(args, env={"PERFECTREP_JAX_KILL_AFTER_CHECKPOINT": "3"}, check=False)
  assert proc.returncode == -9
  assert not (workdir / "checkpoints" / "6").exists()
  run_cli(args)
  _assert_same_weights(_params(reference, step=6), _params(workdir, step=6))
  ref_eval = [m for m in read_metrics(reference) if m.get("split")][-1]
  new_eval = [m for m in read_metrics(workdir) if m.get("split")][-1]
  assert new_eval == pytest.approx(ref_eval)
  ref_train = {m["step"]: m["loss"] for m in read_metrics(reference) if "split" not in m}
  new_train = {m["step"]: m["loss"] for m in read_metrics(workdir) if "split" not in m}
  assert new_train[6] == pytest.approx(ref_train[6])


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(smoke_run, tmp_path):
  import shutil

  workdir = tmp_path / "run"
  shutil.copytree(smoke_run[0], workdir)
  for f in (workdir / "checkpoints" / "6" / "model").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  args = ["train", "--config", f"{CONFIGS / 'pretrain.py'}:smoke", "--workdir", str(workdir)]
  proc = run_cli(args)
  out = proc.stdout + proc.stderr
  assert "checkpoint at step 6 is unreadable" in out and "resumed" in out and "step 3" in out
  # steps 4..6 were trained again from step 3: the result is the uninterrupted run's
  _assert_same_weights(_params(smoke_run[0], step=6), _params(workdir, step=6))


def test_bad_config_is_one_clear_error(tmp_path):
  proc = run_cli(
    [
      "train",
      "--config",
      f"{CONFIGS / 'pretrain.py'}:smoke",
      "--workdir",
      str(tmp_path / "w"),
      "--config.mesh.data=3",
      "--config.data.clip_len=50",
    ],
    check=False,
  )
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert "mesh" in proc.stderr and "clip_len 50 exceeds" in proc.stderr
  assert not (tmp_path / "w").exists()
  proc = run_cli(
    ["train", "--config", f"{CONFIGS / 'pretrain.py'}:nope", "--workdir", str(tmp_path / "w")], check=False
  )
  assert proc.returncode == 2 and "unknown variant" in proc.stderr


def test_a_run_told_to_use_the_tpu_kernels_elsewhere_is_warned_it_will_be_slow():
  from ml_collections import ConfigDict

  from perfectrep_jax.train.trainer import interpreted_kernels_note

  pallas = ConfigDict(dict(attention_impl="pallas"))
  assert "interprets" in interpreted_kernels_note(pallas, "cpu")
  assert "'lanes'" in interpreted_kernels_note(pallas, "gpu")
  assert interpreted_kernels_note(pallas, "tpu") is None
  assert interpreted_kernels_note(ConfigDict(dict(attention_impl="auto")), "cpu") is None
