"""infer() on the bundled example keypoints with a stand-in model, and the animation writers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from perfectrep_jax.data.demo import load_takes
from perfectrep_jax.errors import UserError
from perfectrep_jax.wild import infer as I
from perfectrep_jax.wild.render import render_motion, upright


def _flat_model(x):
  """Stand-in for the DSTformer: keeps x, y, depth 0 (a squat seen from the front-diagonal
  still shows its ten repetitions in the image plane)."""
  y = np.array(x, copy=True)
  y[..., 2] = 0.0
  return y


def test_infer_on_the_example_writes_3d_and_report(tmp_path, example_keypoints):
  summary = I.infer(example_keypoints, _flat_model, 243, tmp_path, fps=25.0, exercise="squat", render=False)
  assert summary["file"]["people"] == ["0", "1"]
  person = summary["people"]["0"]
  assert person["num_reps"] == 10 and person["exercise"] == "squat"
  x3d = np.load(tmp_path / "X3D.npy")
  assert x3d.shape == (733, 17, 3) and x3d.dtype == np.float32
  meta = json.loads((tmp_path / "X3D.json").read_text())
  assert meta["units"] == "normalised" and meta["person"] == "0" and meta["flip_augmentation"]
  assert meta["uncertainty_threshold"] == I.MAX_UNCERTAINTY  # a lifter without its own threshold
  assert meta["camera_axis"] == [0.0, 0.0, 1.0] and meta["camera_up"] == [0.0, -1.0, 0.0]
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["num_reps"] == 10 and {"reps", "score", "feedback"} <= set(report)
  assert (tmp_path / "report.html").exists()


def test_infer_every_person_and_errors(tmp_path, example_keypoints):
  summary = I.infer(
    example_keypoints, _flat_model, 81, tmp_path, fps=25.0, all_people=True, render=False, report=False
  )
  assert sorted(summary["people"]) == ["0", "1"]
  assert np.load(tmp_path / "person_1" / "X3D.npy").shape == (733, 17, 3)
  with pytest.raises(UserError, match="no person with id 5"):
    I.infer(example_keypoints, _flat_model, 243, tmp_path, person=5, render=False)
  with pytest.raises(UserError, match="video not found"):
    I.infer(example_keypoints, _flat_model, 243, tmp_path, video=tmp_path / "missing.mp4")
  with pytest.raises(UserError, match="pixel units need"):
    I.infer(example_keypoints, _flat_model, 243, tmp_path, units="pixel", render=False)


def test_render_gif_beside_the_2d_input(tmp_path):
  motion, _ = load_takes()
  x = motion["uiprmd_m01_s01"][:40].astype(np.float64)
  k2 = np.concatenate([x[..., [0, 2]] * [1, -1], np.ones((40, 17, 1))], -1)
  k2[5:8, 3, 2] = 0.0
  out = render_motion(x, tmp_path / "anim.gif", 50.0, keypoints_2d=k2, max_fps=25)
  assert out.suffix == ".gif" and out.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
  from PIL import Image

  with Image.open(out) as im:
    assert im.n_frames == 20 and im.size[0] > im.size[1]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (MP4 falls back to GIF)")
def test_render_mp4_with_ffmpeg(tmp_path):
  motion, _ = load_takes()
  out = render_motion(motion["uiprmd_m07_s04"][:30], tmp_path / "anim.mp4", 50.0)
  assert out.suffix == ".mp4" and out.stat().st_size > 1000
  info = I.video_info(out)
  assert info == ((320, 320), 25.0)


def test_upright_puts_the_skeleton_vertical():
  motion, _ = load_takes()
  x = motion["uiprmd_m01_s02"][:100].astype(np.float64)
  rot = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # z-up turned into y-down
  y = upright(x @ rot.T)
  assert np.all(y[:, 10, 2] > y[:, 3, 2])  # head above ankles


@pytest.mark.slow
def test_infer_renders_the_animation(tmp_path, example_keypoints):
  I.infer(example_keypoints, _flat_model, 243, tmp_path, fps=25.0, exercise="squat")
  assert (tmp_path / "X3D.mp4").exists() or (tmp_path / "X3D.gif").exists()


def test_a_lifters_own_uncertainty_threshold_comes_from_its_model_json():
  assert I.uncertainty_threshold({"kind": "lifter"}) == I.MAX_UNCERTAINTY  # older or converted models
  assert I.uncertainty_threshold({"uncertainty": {"threshold": 0.08, "spearman": 0.4}}) == 0.08
  assert I.uncertainty_threshold({"uncertainty": {"threshold": None}}) is None  # it told nothing: unused


def test_a_lifters_figure_margins_come_from_its_model_json():
  assert I.figure_margins({"kind": "lifter"}) is None  # older or converted models: none
  meta = {"figure_errors": {"median_abs": {"trunk_lean_max": 2.0, "hip_depth_max": 0.065}, "reps": {}}}
  assert I.figure_margins(meta) == {"trunk_lean_max": 2.0, "hip_depth_max": 0.065}
  # measured by view: the overall table under 'any', each view's own beside it
  meta["figure_errors"]["by_view"] = {"facing": {"median_abs": {"trunk_lean_max": 9.0}, "reps": {}}}
  assert I.figure_margins(meta) == {
    "any": {"trunk_lean_max": 2.0, "hip_depth_max": 0.065},
    "facing": {"trunk_lean_max": 9.0},
  }
  # published with margins (the error most repetitions stay within): those, not the medians
  meta["figure_errors"]["margin"] = {"trunk_lean_max": 4.2, "hip_depth_max": 0.11}
  meta["figure_errors"]["by_view"]["facing"]["margin"] = {"trunk_lean_max": 12.0}
  assert I.figure_margins(meta) == {
    "any": {"trunk_lean_max": 4.2, "hip_depth_max": 0.11},
    "facing": {"trunk_lean_max": 12.0},
  }
