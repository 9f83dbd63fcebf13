"""Lifting with a plain callable: normalisation, windows and blending, flip, batching, smoothing, units."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.data.demo import load_takes
from perfectrep_jax.errors import UserError
from perfectrep_jax.skeleton import JOINT_INDEX as J
from perfectrep_jax.wild import lift as L


def _flat(x):
  """A stand-in model: x, y as given, depth 0."""
  y = np.array(x, copy=True)
  y[..., 2] = 0.0
  return y


class _OffsetPerCall:
  """A model whose every window disagrees: each call adds a different constant to one axis."""

  def __init__(self, axis, step=0.3):
    self.calls, self.axis, self.step, self.shapes = 0, axis, step, []

  def __call__(self, x):
    self.shapes.append(x.shape)
    y = _flat(x)
    for b in range(x.shape[0]):
      self.calls += 1
      y[b, ..., self.axis] += self.step * self.calls
    return y


def _squat_pixels(frames=600):
  motion, _ = load_takes()
  x = motion["uiprmd_m01_s01"][:frames].astype(np.float64)
  px = np.stack([x[..., 0], -x[..., 2]], -1) * 0.4 + [600.0, 700.0]
  return np.concatenate([px, np.full(px.shape[:2] + (1,), 0.9)], -1)


def test_crop_normalisation_as_upstream_and_back_to_pixels():
  kp = _squat_pixels(100)
  x, norm = L.normalize(kp, "crop")
  assert x.dtype == np.float32 and np.abs(x[..., :2]).max() <= 1.0 + 1e-6
  # The longer side of the box of all keypoints spans exactly [-1, 1].
  assert max(np.ptp(x[..., 0]), np.ptp(x[..., 1])) == pytest.approx(2.0, abs=1e-5)
  y3 = np.concatenate([x[..., :2], np.zeros(x.shape[:2] + (1,))], -1)
  np.testing.assert_allclose(norm.to_pixels(y3)[..., :2], kp[..., :2], atol=1e-3)


def test_image_normalisation_needs_the_size_and_inverts():
  kp = _squat_pixels(50)
  with pytest.raises(UserError, match="video's size"):
    L.normalize(kp, "image")
  x, norm = L.normalize(kp, "image", (1280, 720))
  np.testing.assert_allclose(x[..., :2], (kp[..., :2] - [640, 360]) / 360, atol=1e-5)
  y3 = np.concatenate([x[..., :2], np.zeros(x.shape[:2] + (1,))], -1)
  np.testing.assert_allclose(norm.to_pixels(y3)[..., :2], kp[..., :2], atol=1e-3)


@pytest.mark.parametrize(
  "t,maxlen,overlap", [(10, 243, 60), (243, 243, 60), (244, 243, 60), (1000, 243, 60), (700, 81, 20)]
)
def test_windows_cover_everything_with_one_shape(t, maxlen, overlap):
  w = L.plan_windows(t, maxlen, overlap)
  assert w[0][0] == 0 and w[-1][1] == t
  assert all(e - s == min(t, maxlen) for s, e in w)
  assert all(b[0] < a[1] and a[1] - b[0] >= min(overlap, maxlen - 1) for a, b in zip(w, w[1:]))


def test_blending_leaves_no_jump_at_window_borders():
  kp = _squat_pixels(600)
  x, _ = L.normalize(kp, "crop")
  model = _OffsetPerCall(axis=0, step=0.3)  # windows disagree by 0.3 in x
  y = L.lift_sequence(x, model, maxlen=81, overlap=20, batch_size=4)
  truth = L.lift_sequence(x, _flat, maxlen=81, overlap=20)
  step_err = np.abs(np.diff(y[..., 0] - truth[..., 0], axis=0)).max()
  assert step_err <= 0.3 / 20 * 1.5  # spread over the overlap, never a 0.3 jump
  # Depth: each window's own depth offset is removed on the overlap, so depth stays continuous.
  zmodel = _OffsetPerCall(axis=2, step=0.5)
  z = L.lift_sequence(x, zmodel, maxlen=81, overlap=20)
  assert np.abs(z[..., 2]).max() < 1e-6 and z[0, J["pelvis"], 2] == 0.0


def test_model_sees_one_batch_shape():
  x, _ = L.normalize(_squat_pixels(600), "crop")
  model = _OffsetPerCall(axis=0)
  L.lift_sequence(x, model, maxlen=81, overlap=20, batch_size=4, flip=True)
  assert len(set(model.shapes)) == 1 and model.shapes[0] == (4, 81, 17, 3)


def test_flip_averages_out_a_mirror_bias():
  x, _ = L.normalize(_squat_pixels(120), "crop")
  biased = lambda v: _flat(v) + np.array([0.1, 0.0, 0.0], np.float32)  # noqa: E731
  y = L.lift_sequence(x, biased, maxlen=243, flip=True)
  np.testing.assert_allclose(y[..., :2], x[..., :2], atol=1e-6)
  # The flip itself: mirrored twice is the identity, and left and right swap.
  np.testing.assert_allclose(L.flip_pose(L.flip_pose(x)), x)
  assert L.flip_pose(x)[0, J["left_knee"], 0] == -x[0, J["right_knee"], 0]


def test_the_spread_of_the_mirrored_passes_measures_a_lifter_unsure_of_its_answer():
  x, _ = L.normalize(_squat_pixels(300), "crop")
  y, spread = L.lift_sequence(x, _flat, maxlen=81, overlap=20, flip=True, return_spread=True)
  assert spread.shape == (300, 17) and np.abs(spread).max() < 1e-6  # mirror-consistent
  biased = lambda v: _flat(v) + np.array([0.1, 0.0, 0.0], np.float32)  # noqa: E731
  _, spread = L.lift_sequence(x, biased, maxlen=81, overlap=20, flip=True, return_spread=True)
  np.testing.assert_allclose(spread, 0.2, atol=1e-5)  # +0.1 one way, -0.1 mirrored
  assert L.lift_sequence(x, _flat, maxlen=81, return_spread=True)[1] is None
  joints, meta = L.lift_keypoints(_squat_pixels(300), biased, 81, fps=50)
  doubt = L.uncertainty(meta)
  assert doubt.shape == (300, 17)
  np.testing.assert_allclose(
    doubt, 0.2 / L.standing_height(L.lift_sequence(x, biased, 81, flip=True)), rtol=1e-3
  )


def test_short_sequences_and_smoothing():
  kp = _squat_pixels(1)
  y, meta = L.lift_keypoints(kp + [0, 0, 0], _flat, 243, fps=30.0)  # one frame still lifts
  assert y.shape == (1, 17, 3)
  rng = np.random.default_rng(0)
  clean = np.sin(np.linspace(0, 3, 200))[:, None, None] * np.ones((1, 17, 3))
  noisy = clean + rng.normal(size=clean.shape) * 0.05
  smoothed = L.smooth(noisy, fps=50.0, window_s=0.3)
  assert np.abs(smoothed - clean).mean() < 0.5 * np.abs(noisy - clean).mean()
  np.testing.assert_allclose(L.smooth(noisy[:2], 50.0), noisy[:2])


def test_metric_units_from_body_height():
  motion, _ = load_takes()
  x = motion["uiprmd_m01_s09"].astype(np.float64) * 0.0021 + 5.0  # some unknown unit
  raw = motion["uiprmd_m01_s09"].astype(np.float64)
  true_height = float(
    raw[:, J["head"], 2].max() - (raw[:, [J["left_ankle"], J["right_ankle"]], 2].min() - 80.0)
  )
  metric = L.to_metric(x, true_height)
  head_to_ankle = np.linalg.norm(
    metric[:, J["head"]] - 0.5 * (metric[:, J["left_ankle"]] + metric[:, J["right_ankle"]]), axis=-1
  )
  assert np.quantile(head_to_ankle, 0.95) * L.HEIGHT_OVER_HEAD_TO_ANKLE == pytest.approx(
    true_height, rel=1e-9
  )
  # The calibration constant holds for this held-out subject too.
  assert L.standing_height(raw) == pytest.approx(true_height, rel=0.04)


def test_lift_keypoints_errors_and_outputs(tmp_path):
  kp = _squat_pixels(60)
  bad = kp.copy()
  bad[3, 4, 0] = np.nan
  with pytest.raises(UserError, match="NaN"):
    L.lift_keypoints(bad, _flat, 243, fps=30.0)
  with pytest.raises(UserError, match="body height"):
    L.lift_keypoints(kp, _flat, 243, fps=30.0, units="metric")
  with pytest.raises(UserError, match="units must be"):
    L.lift_keypoints(kp, _flat, 243, fps=30.0, units="feet")
  y, meta = L.lift_keypoints(
    kp, _flat, 243, fps=30.0, units="pixel", normalization="image", image_size=(1280, 720), smooth_s=0
  )
  np.testing.assert_allclose(y[..., :2], kp[..., :2], atol=1e-3)
  assert meta["units"] == "pixels" and "pixel" in meta["frame"]
  npy, js = L.save_3d(tmp_path / "out", y, meta)
  np.testing.assert_array_equal(np.load(npy), y)
  doc = json.loads(js.read_text())
  assert doc["shape"] == [60, 17, 3] and doc["joints"][0] == "pelvis" and doc["units"] == "pixels"


def test_frames_resample_onto_another_clock_and_back():
  ramp = np.arange(31, dtype=np.float64)[:, None] * [1.0, -2.0]  # 31 frames at 30 fps: 1 s
  up = L.resample_frames(ramp, 30.0, 50.0)
  assert up.shape == (51, 2)  # the last frame lands on the last input frame's time
  np.testing.assert_allclose(up[:, 0], np.arange(51) * 30.0 / 50.0, atol=1e-12)
  np.testing.assert_allclose(L.resample_frames(up, 50.0, 30.0, len(ramp)), ramp, atol=1e-12)
  assert L.resample_frames(ramp[:1], 30.0, 50.0).shape == (1, 2)


def _speed(x):
  """A stand-in model that answers, as every joint's height, how far the pelvis moves sideways
  from one frame to the next."""
  y = _flat(x)
  step = np.abs(np.diff(x[:, :, J["pelvis"], 0], axis=1, append=x[:, -1:, J["pelvis"], 0]))
  y[..., 1] = step[..., None]
  return y


def test_footage_at_another_rate_is_lifted_on_the_lifters_clock():
  kp50 = _squat_pixels(600)
  kp50[..., 0] += np.linspace(0.0, 300.0, len(kp50))[:, None]  # walking sideways while squatting
  kp15 = L.resample_frames(kp50, 50.0, 15.0)
  lift = dict(smooth_s=None, flip=False)
  direct, meta = L.lift_keypoints(kp15, _speed, 27, fps=15.0, **lift)
  assert meta["lifted_at_fps"] == 15.0
  on_clock, meta = L.lift_keypoints(kp15, _speed, 27, fps=15.0, model_fps=50.0, **lift)
  assert meta["fps"] == 15.0 and meta["lifted_at_fps"] == 50.0 and on_clock.shape == kp15.shape
  # the model saw the motion on its own clock: each frame moves 15/50 of the way it does at 15 fps
  ratio = np.median(on_clock[2:-2, :, 1]) / np.median(direct[2:-2, :, 1])
  assert ratio == pytest.approx(15.0 / 50.0, rel=0.05)
  # ... and the 3D comes back on the footage's frames, not shifted by one
  err = np.abs(on_clock[..., 0] - direct[..., 0]).mean()
  shifted = np.abs(direct[1:, :, 0] - direct[:-1, :, 0]).mean()
  assert err < 0.1 * shifted
  # a rate within 2% of the lifter's is lifted as it is
  near, meta = L.lift_keypoints(kp15, _speed, 27, fps=15.0, model_fps=15.2, **lift)
  assert meta["lifted_at_fps"] == 15.0
  np.testing.assert_array_equal(near, direct)


def test_a_lifters_training_frame_rate_comes_from_its_model_json():
  assert L.trained_fps({"kind": "lifter"}) is None  # converted upstream checkpoints: footage as it is
  assert L.trained_fps({"data": {"fps": 50}}) == 50.0
  for bad in (0, -5, float("nan"), "50", True):
    assert L.trained_fps({"data": {"fps": bad}}) is None
  assert L.on_another_clock(15.0, 50.0) and not L.on_another_clock(49.5, 50.0)
  assert not L.on_another_clock(15.0, None) and not L.on_another_clock(None, 50.0)
