"""PCK / AUC / per-scene tables of the MPI-INF-3DHP protocol, checked against analytic values."""

from __future__ import annotations

import numpy as np
import pytest

from perfectrep_jax import metrics, skeleton


def _poses(n: int = 5, seed: int = 0) -> np.ndarray:
  """Whole-millimetre poses, so that axis-aligned offsets of whole millimetres are exact."""
  return np.round(np.random.default_rng(seed).normal(scale=300.0, size=(n, 17, 3)))


def _offset_joints(gt: np.ndarray, dist: np.ndarray, seed: int = 1) -> np.ndarray:
  """gt with every non-root joint moved by exactly ``dist`` (broadcast to (..., 17)) mm along a
  random signed axis (exact in float64 for whole mm); the root (pelvis) stays put so
  root-relative errors equal ``dist`` exactly, threshold ties included."""
  rng = np.random.default_rng(seed)
  d = np.eye(3)[rng.integers(0, 3, size=gt.shape[:-1])] * rng.choice([-1.0, 1.0], gt.shape[:-1])[..., None]
  dist = np.broadcast_to(np.asarray(dist, np.float64), gt.shape[:-1]).copy()
  dist[..., 0] = 0.0
  return gt + d * dist[..., None]


def test_a_pose_against_itself_scores_100():
  gt = _poses()
  assert metrics.pck(gt, gt) == 100.0
  assert metrics.auc(gt, gt) == 100.0
  assert metrics.auc(gt, gt, joints="3dhp") == 100.0
  # Root-relative: a translated prediction is still perfect.
  assert metrics.pck(gt + np.array([500.0, -20.0, 3000.0]), gt) == 100.0


def test_every_joint_off_by_100mm_gives_the_analytic_values():
  gt = _poses()
  pred = _offset_joints(gt, 100.0)
  # 14 joints (no pelvis) all exactly 100 mm off: thresholds 100, 105, ..., 150 pass = 11 of 31.
  assert metrics.pck(pred, gt, joints="3dhp") == 100.0
  assert metrics.pck(pred, gt, threshold=95.0, joints="3dhp") == 0.0
  assert metrics.auc(pred, gt, joints="3dhp") == pytest.approx(100.0 * 11 / 31, abs=1e-12)
  # All 17 joints: the pelvis (root) is always correct, so each threshold adds 1/17.
  curve = metrics.pck_curve(pred, gt)
  expected = np.where(metrics.PCK_THRESHOLDS >= 100.0, 100.0, 100.0 / 17)
  np.testing.assert_allclose(curve, expected, atol=1e-12)
  assert metrics.auc(pred, gt) == pytest.approx((11 * 17 + 20) / (31 * 17) * 100.0, abs=1e-12)


def test_a_mixed_error_distribution():
  gt = _poses(n=4)
  dist = np.zeros((4, 17))
  dist[:, 1:] = np.array([0.0, 40.0, 149.0, 150.0, 151.0, 400.0, 70.0, 10.0] * 2)
  pred = _offset_joints(gt, dist)
  # 16 non-root + root; errors <= 150 mm: root, 0, 40, 149, 150, 70, 10 (x2 for the repeat).
  assert metrics.pck(pred, gt) == pytest.approx(100.0 * 13 / 17)
  assert metrics.pck(pred, gt, threshold=149.999) == pytest.approx(100.0 * 11 / 17)
  below = lambda t: (
    (1 + sum(2 for e in (0.0, 40.0, 149.0, 150.0, 151.0, 400.0, 70.0, 10.0) if e <= t + 1e-9)) / 17
  )
  assert metrics.auc(pred, gt) == pytest.approx(
    100.0 * np.mean([below(t) for t in np.linspace(0, 150, 31)]), abs=1e-9
  )


def test_the_14_joint_subset_is_the_3dhp_evaluation_joints():
  idx = metrics.MPI_INF_3DHP_PCK_JOINTS
  assert len(idx) == 14 and len(set(idx)) == 14
  left_out = {skeleton.H36M_JOINTS[i] for i in range(17) if i not in idx}
  assert left_out == {"pelvis", "spine", "nose"}
  # They are exactly 3DHP's first 14 test joints (head_top ... left_ankle).
  assert sorted(skeleton.MPI_INF_3DHP_TO_H36M[i] for i in idx) == list(range(14))
  # Errors on the excluded joints do not count.
  gt = _poses()
  dist = np.zeros((5, 17))
  dist[:, [7, 9]] = 500.0
  pred = _offset_joints(gt, dist)
  assert metrics.pck(pred, gt, joints="3dhp") == 100.0
  assert metrics.pck(pred, gt, joints="14") == 100.0
  assert metrics.pck(pred, gt) == pytest.approx(100.0 * 15 / 17)
  assert metrics.pck(pred, gt, joints=[7, 9]) == 0.0
  with pytest.raises(ValueError, match="joints must be"):
    metrics.pck(pred, gt, joints="hands")
  with pytest.raises(ValueError, match="do not fit"):
    metrics.pck(pred, gt, joints=[17])


def test_pck_table_pools_frames_per_sequence_and_scene():
  gt = _poses(n=6)
  # Per frame, all 14 evaluated joints off by the given error.
  errors = np.array([0.0, 200.0, 0.0, 0.0, 200.0, 120.0])
  seqs = ["TS1", "TS2", "TS2", "TS3", "TS5", "TS6"]
  dist = np.repeat(errors[:, None], 17, axis=1)
  pred = _offset_joints(gt, dist)
  table = metrics.pck_table(pred, gt, seqs, joints="3dhp")
  assert table.groups == ("TS1", "TS2", "TS3", "TS5", "TS6", "GS", "noGS", "outdoor", "all")
  assert table.kind["TS1"] == "sequence" and table.kind["GS"] == "scene" and table.kind["all"] == "all"
  assert table.pck["TS1"] == 100.0 and table.pck["TS2"] == 50.0 and table.pck["TS5"] == 0.0
  assert table.pck["GS"] == pytest.approx(100.0 * 2 / 3)  # pooled over its 3 frames, not 50/100
  assert table.pck["noGS"] == 100.0
  assert table.pck["outdoor"] == 50.0
  assert table.pck["all"] == pytest.approx(100.0 * 4 / 6)
  assert table.frames == {
    "TS1": 1,
    "TS2": 2,
    "TS3": 1,
    "TS5": 1,
    "TS6": 1,
    "GS": 3,
    "noGS": 1,
    "outdoor": 2,
    "all": 6,
  }
  # AUC of a frame 120 mm off: thresholds 120..150 = 7 of 31.
  assert table.auc["TS6"] == pytest.approx(100.0 * 7 / 31)
  assert table.auc["outdoor"] == pytest.approx(100.0 * 7 / 62)
  assert table.auc["all"] == pytest.approx(metrics.auc(pred, gt, joints="3dhp"))
  text = table.format()
  assert "outdoor" in text and "PCK@150" in text and len(text.splitlines()) == 10
  # Unknown sequences get a sequence row only; scenes=None drops scene rows.
  other = metrics.pck_table(pred, gt, ["a", "b", "a", "b", "a", "b"], scenes=None)
  assert other.groups == ("a", "b", "all")
  with pytest.raises(ValueError, match="sequence names"):
    metrics.pck_table(pred, gt, seqs[:3])


def test_empty_input_is_nan():
  empty = np.zeros((0, 17, 3))
  assert np.isnan(metrics.pck(empty, empty)) and np.isnan(metrics.auc(empty, empty))
