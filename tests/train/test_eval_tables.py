"""PoseTask.evaluate adds PCK / AUC / bone errors and JSON, CSV and PNG files; the reporter writes
them under WORKDIR/eval/step_<N>/."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from perfectrep_jax import metrics
from perfectrep_jax.train import tasks
from perfectrep_jax.train.reporting import Reporter
from tests.train.conftest import load_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _outputs(sources, t: int = 4, offset_mm: float = 0.0, seed: int = 0):
  """Two eval batches of clips (one per source) in whole millimetres (``scale_mm`` 1, so that
  distances are exact and threshold ties are decided exactly); ``pred`` is ``target_3d`` with every
  non-root joint moved ``offset_mm`` along x, and a padded invalid clip at the end."""
  rng = np.random.default_rng(seed)
  n = len(sources) + 1
  gt = np.round(rng.normal(scale=300.0, size=(n, t, 17, 3)))
  pred = gt.copy()
  pred[..., 1:, 0] += offset_mm
  batch = {
    "pred": pred.astype(np.float64),
    "target_3d": gt,
    "scale_mm": np.ones((n, t)),
    "valid": np.array([1] * (n - 1) + [0]),
    "frame_index": np.tile(np.arange(t), (n, 1)),
    "index": np.arange(n),
    "source": np.asarray(list(sources) + [""]),
    "camera": np.asarray(["test"] * n),
    "action": np.asarray(["unlabelled"] * (n - 1) + [""]),
  }
  half = n // 2
  return [{k: v[:half] for k, v in batch.items()}, {k: v[half:] for k, v in batch.items()}]


def _task(source: str):
  config = load_config("pose3d", "smoke")
  config.data.source = source
  return tasks.PoseTask(config, corrupt=False)


def test_evaluate_reports_pck_auc_bone_errors_and_files():
  task = _task("demo")
  result = task.evaluate(_outputs(["s1", "s2", "s3"], offset_mm=100.0))
  m = result.metrics
  for key in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "eval_clips", "mpjpe/unlabelled"):
    assert key in m  # the existing keys stay
  assert m["mpjpe"] == pytest.approx(100.0 * 16 / 17)
  # 16 joints exactly 100 mm off, the root exact: PCK150 = 100; AUC = (11*16 + 31) / (31*17).
  assert m["pck150"] == 100.0
  assert m["auc"] == pytest.approx(100.0 * (11 * 16 + 31) / (31 * 17), abs=1e-9)
  # Moving every non-root joint by the same 100 mm changes only the 3 bones leaving the pelvis
  # (to the hips and the spine), each by exactly 100 mm: mean over 16 bones = 18.75 mm (float32).
  assert m["bone_vector_error"] == pytest.approx(300.0 / 16, abs=1e-3)
  assert 0.0 < m["bone_rotation_error"] <= 180.0
  assert 0.0 < m["bone_euler_error"] <= 180.0
  assert not any(k.startswith("pck150/") for k in m)  # per-sequence PCK is for 3DHP only
  lines = result.table.splitlines()
  assert lines[-2].startswith("Protocol #1 (MPJPE)")  # the existing text, then the new line
  assert lines[-1].startswith("PCK@150mm: 100.0%   AUC: ")

  files = result.files
  assert {
    "metrics.json",
    "per_action.csv",
    "per_joint.csv",
    "pck_curve.csv",
    "per_joint_error.png",
    "pck_curve.png",
  } <= set(files)
  assert files["per_joint_error.png"].startswith(PNG_MAGIC)
  assert files["pck_curve.png"].startswith(PNG_MAGIC)
  data = json.loads(files["metrics.json"])
  assert data["metrics"]["pck150"] == 100.0
  assert data["per_joint"]["pelvis"]["mpjpe"] == 0.0
  assert data["per_joint"]["left_wrist"]["mpjpe"] == pytest.approx(100.0)
  assert len(data["pck_curve"]["pck"]) == 31
  rows = list(csv.DictReader(io.StringIO(files["pck_curve.csv"].decode())))
  assert len(rows) == 31 and float(rows[0]["threshold_mm"]) == 0.0
  assert float(rows[-1]["pck"]) == 100.0 and float(rows[0]["pck"]) == pytest.approx(100.0 / 17)
  joints = list(csv.DictReader(io.StringIO(files["per_joint.csv"].decode())))
  assert len(joints) == 17 and joints[0]["joint"] == "pelvis"
  actions = list(csv.DictReader(io.StringIO(files["per_action.csv"].decode())))
  assert [a["action"] for a in actions] == ["unlabelled"] and int(actions[0]["frames"]) == 12


def test_evaluate_on_3dhp_adds_sequence_and_scene_pck():
  task = _task("mpi_inf_3dhp/clip81")
  outputs = _outputs(["TS1", "TS3", "TS5"], offset_mm=0.0)
  # TS5 (outdoor) predictions 200 mm off on every non-root joint.
  for o in outputs:
    o["pred"][o["source"] == "TS5", :, 1:, 0] += 200.0
  result = task.evaluate(outputs)
  m = result.metrics
  assert m["pck150/TS1"] == 100.0 and m["pck150/GS"] == 100.0 and m["pck150/noGS"] == 100.0
  assert m["pck150/TS5"] == pytest.approx(100.0 / 17) and m["pck150/outdoor"] == m["pck150/TS5"]
  assert m["pck150_14j/outdoor"] == 0.0 and m["auc_14j/GS"] == 100.0
  assert m["pck150"] == pytest.approx(100.0 * (2 * 17 + 1) / (3 * 17))
  assert m["pck150_14j"] == pytest.approx(100.0 * 2 / 3)
  assert "PCK / AUC per sequence and scene" in result.table and "outdoor" in result.table
  rows = list(csv.DictReader(io.StringIO(result.files["pck_table.csv"].decode())))
  assert {(r["joints"], r["group"]) for r in rows} >= {("17", "GS"), ("14", "outdoor"), ("14", "all")}
  assert json.loads(result.files["metrics.json"])["pck_table"]["14"]["TS5"]["frames"] == 4


def test_overlapping_clips_average_their_predictions_per_frame():
  task = _task("demo")
  outputs = _outputs(["s1", "s1"], offset_mm=0.0)
  # Both clips cover frames 0..3 of s1 (same camera): one is 100 mm off, the other 300 mm off
  # in x; each frame's averaged prediction is 200 mm off.
  gt = np.concatenate([o["target_3d"] for o in outputs])
  outputs[0]["target_3d"][:] = gt[0]
  outputs[1]["target_3d"][:] = gt[0]
  for o, off in zip(outputs, (100.0, 300.0)):
    o["pred"][:] = gt[0]
    o["pred"][..., 1:, 0] += off
  result = task.evaluate(outputs)
  assert result.metrics["pck150"] == pytest.approx(100.0 / 17)
  data = json.loads(result.files["metrics.json"])
  assert data["per_joint"]["head"]["mpjpe"] == pytest.approx(200.0)


def test_clips_of_the_same_frames_from_different_cameras_are_not_merged():
  """The mocap evaluation films every clip from its own camera: two clips of frames 0..3 of one
  take, each predicted exactly in its own camera's frame (90 degrees apart), are two perfect
  predictions, not one averaged between the views."""
  task = _task("demo")
  outputs = _outputs(["s1", "s1"], offset_mm=0.0)  # one clip per batch (and a padded one)
  motion = outputs[0]["target_3d"][0]
  turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  outputs[1]["target_3d"][0] = outputs[1]["pred"][0] = motion @ turn.T
  outputs[0]["pred"][0] = motion
  for o, view in zip(outputs, ("virtual/0", "virtual/1")):
    o["camera"] = np.full(len(o["camera"]), view)
  result = task.evaluate(outputs)
  assert result.metrics["mpjpe"] == pytest.approx(0.0, abs=1e-9)
  assert result.metrics["pck150"] == 100.0 and result.metrics["auc"] == 100.0
  for o in outputs:  # the same frames of one camera are merged: the two views average to nonsense
    o["camera"] = np.full(len(o["camera"]), "virtual")
  assert task.evaluate(outputs).metrics["pck150"] < 100.0


def test_reporter_writes_the_files_under_eval_step(tmp_path):
  reporter = Reporter(tmp_path, total_steps=1, batch_size=1, enabled=True)
  try:
    result = tasks.EvalResult(
      metrics={"mpjpe": 1.0}, table="t", best_metric=1.0, files={"a.json": b"{}", "b.png": PNG_MAGIC}
    )
    reporter.eval(7, result)
    assert (tmp_path / "eval" / "step_7" / "a.json").read_bytes() == b"{}"
    assert (tmp_path / "eval" / "step_7" / "b.png").read_bytes() == PNG_MAGIC
    with pytest.raises(ValueError, match="plain file name"):
      reporter.eval(8, tasks.EvalResult(metrics={}, table="", best_metric=0.0, files={"../x": b""}))
    reporter.eval(9, tasks.EvalResult(metrics={}, table="", best_metric=0.0))  # no files
    assert not (tmp_path / "eval" / "step_9").exists()
  finally:
    reporter.close()


def test_bone_errors_vanish_for_a_perfect_prediction():
  task = _task("demo")
  result = task.evaluate(_outputs(["s1"], offset_mm=0.0))
  assert result.metrics["bone_vector_error"] == pytest.approx(0.0, abs=1e-3)
  assert result.metrics["bone_rotation_error"] == pytest.approx(0.0, abs=0.1)
  assert result.metrics["bone_euler_error"] == pytest.approx(0.0, abs=0.1)
  assert result.metrics["pck150"] == 100.0 and result.metrics["auc"] == 100.0
  assert metrics.auc(np.zeros((1, 17, 3)), np.zeros((1, 17, 3))) == 100.0


def test_euler_bone_error_is_reported_beside_the_geodesic_one():
  """PETR's Euler-angle bone error: the mean over the valid clips' poses, bones and the three
  angles of ``bones.bone_euler_error``, in the metrics, metrics.json and the printed line."""
  from perfectrep_jax import bones

  outputs = _outputs(["s1", "s2"], offset_mm=0.0, seed=3)
  rng = np.random.default_rng(1)
  for o in outputs:
    o["pred"] = o["pred"] + rng.normal(scale=40.0, size=o["pred"].shape)
  result = _task("demo").evaluate(outputs)
  pred = np.concatenate([o["pred"][o["valid"] > 0] for o in outputs])
  gt = np.concatenate([o["target_3d"][o["valid"] > 0] for o in outputs])
  pred, gt = pred - pred[..., :1, :], gt - gt[..., :1, :]
  want = float(
    np.mean(
      np.asarray(
        bones.bone_euler_error(
          pred.reshape(-1, 17, 3).astype(np.float32), gt.reshape(-1, 17, 3).astype(np.float32)
        )
      )
    )
  )
  m = result.metrics
  assert m["bone_euler_error"] == pytest.approx(want, rel=1e-4) and want > 1.0
  assert m["bone_euler_error"] != pytest.approx(m["bone_rotation_error"], rel=1e-3)
  assert json.loads(result.files["metrics.json"])["metrics"]["bone_euler_error"] == pytest.approx(
    want, rel=1e-4
  )
  assert f"(Euler angles: {m['bone_euler_error']:.2f} deg)" in result.table.splitlines()[-1]
