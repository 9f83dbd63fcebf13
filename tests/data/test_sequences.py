"""Camera geometry and the sequence -> clip-example normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from perfectrep_jax.data import cameras, clips
from perfectrep_jax.data.sequences import ClipSource, make_sequence


def _rotation_from_quaternion(q):
  w, x, y, z = q / np.linalg.norm(q)
  return np.array(
    [
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
  )


def test_quaternion_world_to_camera_matches_rotation_matrix():
  q = np.array([0.14, -0.15, -0.76, 0.62])
  q /= np.linalg.norm(q)
  centre = np.array([1841.0, 4955.0, 1563.0])
  points = np.random.default_rng(0).normal(size=(5, 17, 3)) * 1000
  expected = (points - centre) @ _rotation_from_quaternion(q)  # camera = R^T (X - T), R camera->world
  np.testing.assert_allclose(cameras.world_to_camera_quaternion(points, q, centre), expected, atol=1e-6)


def test_pinhole_projection_and_distortion():
  intr = cameras.Intrinsics(f=(1000.0, 1100.0), c=(500.0, 480.0), res_w=1000, res_h=1000)
  pts = np.array([[100.0, -50.0, 4000.0], [0.0, 0.0, 3000.0]])
  np.testing.assert_allclose(cameras.project(pts, intr), [[525.0, 466.25], [500.0, 480.0]])
  bent = cameras.Intrinsics(
    f=(1000.0, 1000.0), c=(0.0, 0.0), res_w=1000, res_h=1000, k=(0.1, 0.0, 0.0), p=(0.01, 0.0)
  )
  x, y = 0.2, 0.1
  r2 = x * x + y * y
  expected = np.array([x, y]) * (1 + 0.1 * r2 + 0.01 * x) + np.array([0.01, 0.0]) * r2
  np.testing.assert_allclose(cameras.project(np.array([x * 10, y * 10, 10.0]), bent), expected * 1000)


def test_look_at_puts_the_target_on_the_optical_axis():
  position, target = np.array([3000.0, -2000.0, 1500.0]), np.array([0.0, 0.0, 900.0])
  rot = cameras.look_at_rotation(position, target)
  np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
  assert np.linalg.det(rot) == pytest.approx(1.0)
  cam = cameras.world_to_camera_rt(target, rot, position)
  np.testing.assert_allclose(cam[:2], 0, atol=1e-9)
  assert cam[2] == pytest.approx(np.linalg.norm(target - position))
  above = cameras.world_to_camera_rt(target + [0, 0, 500], rot, position)
  assert above[1] < 0  # image y points down


def test_scale_factor_is_depth_over_focal_for_a_fronto_parallel_pose():
  rng = np.random.default_rng(0)
  pose = np.concatenate([rng.normal(size=(3, 17, 2)) * 300, np.full((3, 17, 1), 0.0)], -1)
  pose[..., 2] = np.array([3000.0, 4000.0, 5000.0])[:, None]
  intr = cameras.Intrinsics(f=(1000.0, 1000.0), c=(500.0, 500.0), res_w=1000, res_h=1000)
  factor = cameras.image_scale_factor(cameras.project(pose, intr), pose)
  np.testing.assert_allclose(factor, [3.0, 4.0, 5.0])


def _walking_pose(frames=40):
  rng = np.random.default_rng(1)
  base = rng.normal(size=(17, 3)) * 250
  t = np.arange(frames)[:, None, None]
  return base + np.array([10.0, 0.0, 30.0]) * t + np.array([0.0, 0.0, 4000.0])


def test_make_sequence_normalises_as_motionbert_and_denormalises_to_mm():
  cam = _walking_pose()
  intr = cameras.Intrinsics(f=(1145.0, 1145.0), c=(500.0, 500.0), res_w=1000, res_h=1000)
  pixels = cameras.project(cam, intr)
  seq = make_sequence(
    source="s", subject="a", action="b", camera="c", points_cam_mm=cam, pixels=pixels, res_w=1000, res_h=1000
  )
  np.testing.assert_allclose(seq.input_2d[..., :2], pixels / 1000 * 2 - 1, atol=1e-6)
  assert np.all(seq.input_2d[..., 2] == 1)
  np.testing.assert_array_equal(seq.target_3d[..., :2], seq.input_2d[..., :2])
  example = ClipSource([seq], clip_len=16, stride=8)[1]
  assert example["target_3d"][0, 0, 2] == 0
  mm = clips.denormalize_mm(example["target_3d"], example["scale_mm"])
  truth = cam[example["frame_index"]] - cam[example["frame_index"], :1]
  np.testing.assert_allclose(mm[..., 2], truth[..., 2], atol=1e-2)  # depth: exact
  assert np.abs(mm[..., :2] - truth[..., :2]).mean() < 30  # x, y: the 2.5D approximation


def test_detections_keep_their_confidence_and_frame_ids_map_back():
  cam = _walking_pose(20)
  intr = cameras.Intrinsics(f=(1145.0, 1145.0), c=(500.0, 500.0), res_w=1000, res_h=1000)
  pixels = cameras.project(cam, intr)
  detections = np.concatenate([pixels + 3.0, np.full((20, 17, 1), 0.7)], -1)
  seq = make_sequence(
    source="s",
    subject="a",
    action="b",
    camera="c",
    points_cam_mm=cam,
    pixels=pixels,
    res_w=1000,
    res_h=1000,
    input_px=detections,
    frame_ids=np.arange(20) * 2 + 5,
  )
  np.testing.assert_allclose(seq.input_2d[..., :2], (pixels + 3) / 1000 * 2 - 1, atol=1e-6)
  assert np.allclose(seq.input_2d[..., 2], 0.7)
  example = ClipSource([seq], clip_len=8, stride=8)[1]
  np.testing.assert_array_equal(example["frame_index"], np.arange(8, 16) * 2 + 5)
  with pytest.raises(ValueError):
    make_sequence(
      source="s",
      subject="a",
      action="b",
      camera="c",
      points_cam_mm=cam,
      pixels=pixels,
      res_w=1000,
      res_h=1000,
      input_px=detections[:10],
    )


def test_clip_source_cuts_and_resamples():
  intr = cameras.Intrinsics(f=(1145.0, 1145.0), c=(500.0, 500.0), res_w=1000, res_h=1000)
  seqs = []
  for name, n in (("long", 30), ("short", 5)):
    cam = _walking_pose(n)
    seqs.append(
      make_sequence(
        source=name,
        subject="a",
        action="b",
        camera="c",
        points_cam_mm=cam,
        pixels=cameras.project(cam, intr),
        res_w=1000,
        res_h=1000,
      )
    )
  src = ClipSource(seqs, clip_len=10, stride=4)
  assert len(src) == 6 + 1  # windows at 0, 4, ..., 20 and one resampled clip
  assert src[-1]["source"] == "short" and src[-1]["frame_index"].max() <= 4
  assert ClipSource(seqs, 10, 4)[-1]["frame_index"].tolist() == src[-1]["frame_index"].tolist()
  with pytest.raises(IndexError):
    src[7]
