"""Keypoint readers: ViTPose/easy_ViTPose, AlphaPose (COCO-17, Halpe-26), MMPose, npy; tracks; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfectrep_jax.errors import UserError
from perfectrep_jax.skeleton import coco_to_h36m
from perfectrep_jax.wild import keypoints as K


def _person(t, dx=0.0, k=17, seed=0):
  """A plausible standing COCO pose (k, 3) in pixels, moving right by t px per frame."""
  rng = np.random.default_rng(seed)
  base = np.array(
    [
      [100, 40],
      [104, 36],
      [96, 36],
      [110, 38],
      [90, 38],
      [120, 70],
      [80, 70],
      [125, 100],
      [75, 100],
      [128, 130],
      [72, 130],
      [112, 140],
      [88, 140],
      [113, 190],
      [87, 190],
      [114, 240],
      [86, 240],
    ],
    float,
  )
  xy = base + [t + dx, 0.0] + rng.normal(size=base.shape) * 0.2
  kp = np.concatenate([xy, np.full((17, 1), 0.9)], axis=1)
  if k > 17:
    extra = np.concatenate([np.tile(xy.mean(0), (k - 17, 1)), np.full((k - 17, 1), 0.8)], axis=1)
    kp = np.concatenate([kp, extra])
  return kp


def _write(tmp_path, doc, name="kp.json"):
  p = tmp_path / name
  p.write_text(json.dumps(doc))
  return p


def test_easy_vitpose_layout_is_y_x_score(tmp_path):
  frames = [{"0": _person(t)[:, [1, 0, 2]].tolist()} for t in range(5)]
  kf = K.read_keypoints(_write(tmp_path, {"keypoints": frames, "skeleton": {}}))
  assert (kf.format, kf.skeleton, kf.num_frames) == ("vitpose", "coco17", 5)
  np.testing.assert_allclose(kf.tracks[0].coco[3], _person(3))
  # Read as x, y on request.
  swapped = K.read_keypoints(kf.path, coords="xy")
  np.testing.assert_allclose(swapped.tracks[0].coco[3][:, [1, 0, 2]], _person(3))


def test_upstream_flat_per_frame_lists(tmp_path):
  frames = [_person(t)[:, [1, 0, 2]].ravel().tolist() for t in range(4)]
  kp, kf, track = K.load_person(_write(tmp_path, {"keypoints": frames}))
  assert kp.shape == (4, 17, 3) and kp.dtype == np.float32
  np.testing.assert_allclose(kp[2], coco_to_h36m(_person(2)), atol=1e-4)


@pytest.mark.parametrize("k,skeleton", [(17, "coco17"), (26, "halpe26"), (136, "halpe136")])
def test_alphapose_with_track_ids(tmp_path, k, skeleton):
  dets = []
  for t in range(6):
    dets.append(
      {
        "image_id": f"{t}.jpg",
        "category_id": 1,
        "keypoints": _person(t, k=k).ravel().tolist(),
        "score": 2.5,
        "box": [0, 0, 10, 10],
        "idx": 3,
      }
    )
    if t >= 2:  # a larger second person enters at frame 2 and stays
      big = _person(0, dx=300, k=k)
      big[:, :2] = big[:, :2] * 1.5
      dets.append({"image_id": f"{t}.jpg", "keypoints": big.ravel().tolist(), "idx": [7]})
  kf = K.read_keypoints(_write(tmp_path, dets))
  assert (kf.format, kf.skeleton) == ("alphapose", skeleton)
  assert sorted(t.id for t in kf.tracks) == ["3", "7"]
  assert K.select_track(kf, 7).num_detected == 4
  assert K.select_track(kf).id == "3"  # seen in every frame: more present beats larger here
  with pytest.raises(UserError, match=r"no person with id '9'; ids in the file: 3, 7"):
    K.select_track(kf, "9")


def test_alphapose_without_ids_links_people_frame_to_frame(tmp_path):
  # Two people walk in opposite directions, listed in a shuffled order every frame.
  rng = np.random.default_rng(1)
  dets = []
  for t in range(20):
    people = [_person(3 * t, seed=t), _person(-3 * t, dx=200, seed=100 + t)]
    for i in rng.permutation(2):
      dets.append({"image_id": t, "keypoints": people[i].ravel().tolist()})
  kf = K.read_keypoints(_write(tmp_path, dets))
  assert len(kf.tracks) == 2 and all(t.num_detected == 20 for t in kf.tracks)
  for tr in kf.tracks:
    steps = np.diff(tr.coco[:, 0, 0])
    assert np.all(np.abs(np.abs(steps) - 3) < 1.5)  # each track moves smoothly one way


def test_mmpose_layout(tmp_path):
  doc = [
    {"frame_id": t, "instances": [{"keypoints": _person(t)[:, :2].tolist(), "keypoint_scores": [0.8] * 17}]}
    for t in range(3)
  ]
  kf = K.read_keypoints(_write(tmp_path, doc))
  assert kf.format == "mmpose"
  np.testing.assert_allclose(kf.tracks[0].coco[1, :, :2], _person(1)[:, :2])


def test_npy_with_and_without_confidence(tmp_path):
  xy = np.stack([_person(t)[:, :2] for t in range(8)])
  xy[4, 9] = np.nan
  np.save(tmp_path / "a.npy", xy)
  kp, kf, _ = K.load_person(tmp_path / "a.npy")
  assert kf.format == "npy" and kp.shape == (8, 17, 3)
  assert np.isfinite(kp).all()
  coco = kf.tracks[0].coco
  assert coco[4, 9, 2] == 0 and coco[3, 9, 2] == 1
  h36m = np.stack([_person(t)[:, :2] for t in range(8)])
  np.save(tmp_path / "b.npy", np.concatenate([h36m, np.full((8, 17, 1), 0.5)], -1))
  kp, _, _ = K.load_person(tmp_path / "b.npy", joint_order="h36m")
  np.testing.assert_allclose(kp[..., :2], h36m)


def test_missing_detections_and_joints_become_confidence_zero(tmp_path):
  frames = []
  for t in range(10):
    if t in (3, 4):
      frames.append({})
      continue
    kp = _person(t)
    if t == 6:
      kp[15, 2] = 0.0  # left ankle not seen
    frames.append({"0": kp[:, [1, 0, 2]].tolist()})
  kp, kf, track = K.load_person(_write(tmp_path, {"keypoints": frames}))
  assert not track.present[3] and not track.present[4]
  assert np.all(kp[3:5, :, 2] == 0) and np.isfinite(kp).all()
  # The hole is filled by interpolation: frame 3 lies between frames 2 and 5.
  np.testing.assert_allclose(kp[3, :, 0], kp[2, :, 0] + (kp[5, :, 0] - kp[2, :, 0]) / 3, atol=0.5)
  assert kp[6, 6, 2] == 0  # H36M left ankle
  assert 110 < kp[6, 6, 0] < 125


def test_a_joint_never_seen_takes_its_parents_place():
  kp = np.stack([_person(t) for t in range(3)])
  kp[:, 15:17, 2] = 0.0  # ankles never seen
  kp[:, 15:17, :2] = np.nan
  filled = K.fill_missing(coco_to_h36m(np.nan_to_num(K.fill_missing(kp))))
  assert np.isfinite(filled).all()


@pytest.mark.parametrize(
  "content,match",
  [
    ("", "the file is empty"),
    ("{not json", "not valid JSON"),
    ("[]", "no person detected"),
    ('{"keypoints": []}', "no person detected"),
    ('{"keypoints": [{}, {}]}', "no person detected in any of its 2 frame"),
    ('{"keypoints": [[[1, 2, 0.5], [3, 4, 0.5]]]}', "2 keypoints per person"),
    ('{"people": 3}', "unknown keypoint layout"),
    ('[{"image_id": 0}]', "no 'keypoints'"),
  ],
)
def test_bad_files_are_clear_errors(tmp_path, content, match):
  p = tmp_path / "bad.json"
  p.write_text(content)
  with pytest.raises(UserError, match=match) as err:
    K.read_keypoints(p)
  assert str(p) in str(err.value)


def test_bad_npy_and_missing_file(tmp_path):
  with pytest.raises(UserError, match="not found"):
    K.read_keypoints(tmp_path / "nope.json")
  np.save(tmp_path / "w.npy", np.zeros((5, 18, 2)))
  with pytest.raises(UserError, match=r"\(frames, 17, 2 or 3\)"):
    K.read_keypoints(tmp_path / "w.npy")
  np.save(tmp_path / "n.npy", np.full((5, 17, 2), np.nan))
  with pytest.raises(UserError, match="no person detected"):
    K.read_keypoints(tmp_path / "n.npy")


def test_bundled_example(example_keypoints):
  assert example_keypoints.stat().st_size < 1_000_000
  kf = K.read_keypoints(example_keypoints)
  assert kf.format == "vitpose" and kf.num_frames == 733
  assert [t.id for t in kf.tracks] == ["0", "1"]  # the lifter and a bystander
  lifter = K.select_track(kf)
  assert lifter.id == "0" and 0 < (~lifter.present).sum() <= 20
