"""Evaluation metrics against upstream's per-pose errors, and their invariances.

Tolerances: the NumPy metrics compute in float64 from the same float32 inputs as upstream's NumPy
code, so they agree to float64 round-off (observed 3e-14 mm; we hold 1e-10 relative). The JAX
versions run in float32: held to 1e-3 mm on poses of ~1 m (observed 2e-5 mm). Loss fixtures are
float32 torch scalars: held to 1e-6 relative against the float64 metric.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perfectrep_jax import metrics as M


@pytest.fixture(scope="module")
def io(parity_dir):
  with np.load(parity_dir / "losses_io.npz") as d:
    return {k: d[k] for k in d.files}


def _poses(seed, n=8, scale=400.0):
  return np.random.default_rng(seed).normal(size=(n, 17, 3)) * scale


def test_per_pose_errors_match_upstream(io):
  pred, gt = io["pred"].reshape(-1, 17, 3), io["gt"].reshape(-1, 17, 3)
  np.testing.assert_allclose(M.mpjpe_per_pose(pred, gt), io["mpjpe"], rtol=1e-10)
  np.testing.assert_allclose(M.p_mpjpe_per_pose(pred, gt), io["p_mpjpe"], rtol=1e-10)
  # Leading axes are kept: a (clips, T, J, 3) array gives (clips, T).
  np.testing.assert_allclose(
    M.p_mpjpe_per_pose(io["pred"], io["gt"]), io["p_mpjpe"].reshape(3, 9), rtol=1e-10
  )


def test_jax_versions_match_numpy(io):
  pred, gt = io["pred"], io["gt"]
  np.testing.assert_allclose(jax.jit(M.jax_mpjpe_per_pose)(pred, gt), io["mpjpe"].reshape(3, 9), atol=1e-3)
  np.testing.assert_allclose(
    jax.jit(M.jax_p_mpjpe_per_pose)(pred, gt), io["p_mpjpe"].reshape(3, 9), atol=1e-3
  )
  mirrored = gt * np.array([-1.0, 1.0, 1.0], np.float32)  # needs the reflection fix
  np.testing.assert_allclose(
    jax.jit(M.jax_p_mpjpe_per_pose)(mirrored, gt), M.p_mpjpe_per_pose(mirrored, gt), atol=1e-3
  )


def test_scale_and_velocity_metrics_match_losses(io):
  np.testing.assert_allclose(M.n_mpjpe(io["pred"], io["gt"]), io["n_mpjpe"], rtol=1e-6)
  np.testing.assert_allclose(M.mpjve(io["pred"], io["gt"]), io["loss_velocity"], rtol=1e-6)
  assert M.mpjve(io["pred"][:, :1], io["gt"][:, :1]) == 0.0


def test_p_mpjpe_removes_similarity_transforms():
  gt = _poses(0)
  rot = Rotation.random(len(gt), random_state=1).as_matrix()
  pred = 0.7 * np.einsum("nij,nkj->nki", rot, gt) + np.array([100.0, -50.0, 3000.0])
  assert np.all(M.p_mpjpe_per_pose(pred, gt) < 1e-9)
  assert np.all(M.mpjpe_per_pose(pred, gt) > 100.0)
  assert np.all(M.mpjpe_per_pose(gt, gt) == 0.0)
  np.testing.assert_allclose(M.n_mpjpe_per_pose(1.3 * gt, gt), 0.0, atol=1e-9)


def test_p_mpjpe_against_independent_kabsch():
  """Proper rotation from scipy's Kabsch solver, then the least-squares scale and translation."""
  pred, gt = _poses(2), _poses(3)
  pred[0] = gt[0] * np.array([-1.0, 1.0, 1.0]) + 5.0  # a mirror image: no proper rotation aligns it
  expected = []
  for p, g in zip(pred, gt):
    p0, g0 = p - p.mean(0), g - g.mean(0)
    rot, _ = Rotation.align_vectors(g0, p0)
    p_rot = rot.apply(p0)
    scale = np.sum(g0 * p_rot) / np.sum(p0 * p0)
    expected.append(np.linalg.norm(scale * p_rot - g0, axis=-1).mean())
  np.testing.assert_allclose(M.p_mpjpe_per_pose(pred, gt), expected, rtol=1e-9)
  assert expected[0] > 10.0
  assert np.all(M.p_mpjpe_per_pose(pred, gt) <= M.mpjpe_per_pose(pred, gt))


def test_degenerate_prediction_is_finite():
  gt = _poses(4, n=2)
  collapsed = np.repeat(gt[:, :1], 17, axis=1)
  p2 = M.p_mpjpe_per_pose(collapsed, gt)
  centred = np.linalg.norm(gt - gt.mean(1, keepdims=True), axis=-1).mean(-1)
  np.testing.assert_allclose(p2, centred, rtol=1e-12)
  assert np.all(np.isfinite(M.n_mpjpe_per_pose(np.zeros_like(gt), gt)))


def test_shape_errors():
  with pytest.raises(ValueError, match="differ"):
    M.mpjpe_per_pose(np.zeros((2, 17, 3)), np.zeros((3, 17, 3)))
  with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
    M.p_mpjpe_per_pose(np.zeros((2, 17, 2)), np.zeros((2, 17, 2)))


def test_topk_accuracy():
  logits = np.array(
    [
      [0.1, 0.9, 0.0, 0.0],  # label 1: top-1 hit
      [0.5, 0.2, 0.3, 0.0],  # label 2: second
      [0.1, 0.2, 0.3, 0.4],  # label 0: last
      [1.0, 1.0, 0.0, 0.0],
    ]
  )  # label 1: tie with class 0, lower index wins
  labels = np.array([1, 2, 0, 1])
  assert M.topk_accuracy(logits, labels, ks=(1, 2, 4)) == (25.0, 75.0, 100.0)
  rng = np.random.default_rng(5)
  logits, labels = rng.normal(size=(64, 10)), rng.integers(0, 10, 64)
  rank = (logits > logits[np.arange(64), labels][:, None]).sum(1)  # classes scoring higher
  for k, acc in zip((1, 5), M.topk_accuracy(logits, labels)):
    assert acc == pytest.approx(100.0 * np.mean(rank < k))
  with pytest.raises(ValueError):
    M.topk_accuracy(logits, labels, ks=(11,))


def _upstream_style_table(e_clips, clip_frames, frame_actions):
  """Reference: the per-frame accumulation loop of upstream evaluate(), written out plainly."""
  n = len(frame_actions)
  total, count = np.zeros(n), np.zeros(n)
  for frames, err in zip(clip_frames, e_clips):
    total[frames] += err
    count[frames] += 1
  per_action = {}
  for idx in range(n):
    if total[idx] > 0:
      per_action.setdefault(frame_actions[idx], []).append(total[idx] / count[idx])
  means = {a: np.mean(v) for a, v in sorted(per_action.items())}
  return means, np.mean(list(means.values()))


def test_action_table_averages_like_upstream():
  rng = np.random.default_rng(6)
  frame_actions = np.array(["squat"] * 30 + ["deadlift"] * 12 + ["bench"] * 20)
  # Overlapping clips of 10 frames, a short sequence resampled with repeated frame indices,
  # and frames 60, 61 covered by no clip.
  clip_frames = np.array(
    [np.arange(s, s + 10) for s in (0, 5, 10, 20, 30, 40, 50)]
    + [np.array([42, 42, 43, 43, 44, 44, 45, 46, 47, 47])]
  )
  p1 = rng.uniform(10, 90, size=clip_frames.shape)
  p2 = p1 * 0.8
  table = M.action_table({"P1": p1, "P2": p2}, clip_frames, frame_actions)
  ref_p1, ref_overall = _upstream_style_table(p1, clip_frames, frame_actions)
  assert table.actions == ("bench", "deadlift", "squat")
  for a in table.actions:
    assert table.errors["P1"][a] == pytest.approx(ref_p1[a], rel=1e-12)
    assert table.errors["P2"][a] == pytest.approx(0.8 * ref_p1[a], rel=1e-12)
  assert table.overall["P1"] == pytest.approx(ref_overall, rel=1e-12)
  assert table.frames == {"bench": 18, "deadlift": 12, "squat": 30}
  # Each action weighs the same: the overall mean is not the mean over frames.
  by_frames = sum(table.errors["P1"][a] * table.frames[a] for a in table.actions) / sum(table.frames.values())
  assert abs(table.overall["P1"] - by_frames) > 1e-3
  text = table.format()
  assert "squat" in text and f"{table.overall['P1']:.2f}" in text.splitlines()[1]


def test_action_table_checks_shapes():
  with pytest.raises(ValueError, match="outside"):
    M.action_table({"P1": np.zeros((1, 3))}, np.array([[0, 1, 5]]), ["a"] * 3)
  with pytest.raises(ValueError, match="do not match"):
    M.action_table({"P1": np.zeros((1, 2))}, np.array([[0, 1, 2]]), ["a"] * 3)


def test_depth_error_sees_only_root_relative_depth():
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(5, 17, 3))
  moved = gt + np.array([3.0, -2.0, 7.0])  # a global shift costs nothing
  assert M.depth_error(moved, gt) == pytest.approx(0.0, abs=1e-12)
  flat = gt.copy()
  flat[..., 2] = flat[..., :1, 2]  # every joint at the root's depth
  expected = np.abs(gt[..., 2] - gt[..., :1, 2]).mean()
  assert M.depth_error(flat, gt) == pytest.approx(expected)
  sideways = gt.copy()
  sideways[..., :2] += rng.normal(size=(5, 17, 2))  # x, y errors are not depth errors
  assert M.depth_error(sideways, gt) == pytest.approx(0.0, abs=1e-12)
